"""The evaluation report of a patch classifier: ``metrics.json``, ROC curves, and one self-contained HTML page.

:func:`write_classification_report` writes, atomically, to one folder:

- ``metrics.json``: every figure of :func:`~cytolens.metrics.patch_classification.patch_metrics` (and what the
  caller adds: the model, the test-time views);
- ``roc_curves.png``: ROC curves, one per class (one against the rest), and, with a positive group, that of
  "holds a type of the group" with its operating point;
- ``report.html``: the overall, group and per-class figures, the ROC curves, the confusion matrix (rows true,
  columns called; a multi-label classifier's true and false calls per type instead) and a gallery of the
  misclassified patches, most confident mistakes first (:mod:`cytolens.metrics.patch_gallery`), each with its
  true and called types and their probabilities. Pictures are embedded, so the page is one file to share.

The page is framed like a detector's report (:func:`cytolens.metrics.report.html_page`).
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image
from sklearn.metrics import multilabel_confusion_matrix, roc_curve

from cytolens.io.atomic import write_bytes, write_text
from cytolens.io.colors import class_color
from cytolens.metrics.classification import group_scores
from cytolens.metrics.numbers import is_figure, json_safe
from cytolens.metrics.patch_classification import ScoredPatches
from cytolens.metrics.patch_gallery import caption, misclassified, patch_pictures
from cytolens.metrics.report import embedded_png, figure_table, html_page, png_bytes

GROUP_COLOUR = (213, 94, 0)
"""RGB of the positive group's ROC curve (Okabe-Ito vermilion)."""

_STYLE = """
.confusion td { min-width: 2.5em; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.8em; }
.gallery figure { width: 180px; margin: 0; font-size: 0.8em; }
.gallery img { width: 128px; height: 128px; image-rendering: pixelated; }
"""

_COUNTS = ("patches", "images", "views")
"""Top-level numbers that describe the data rather than score the classifier (shown in the summary)."""


def plot_roc_curves(scored: ScoredPatches, figures: dict[str, Any]) -> bytes:
    """ROC curves as PNG bytes: one panel with a curve per class present and absent in some patches, and one for
    the positive group when ``figures`` hold one (``figures["positive"]``, marking its operating point).
    """
    group = figures.get("positive")
    panels = 2 if group else 1
    figure = Figure(figsize=(5.5 * panels, 5), dpi=100, layout="constrained")
    axes = figure.add_subplot(1, panels, 1)
    truth = scored.truth
    for k, name in enumerate(scored.classes):
        auc = figures["per_class"][name]["auc"]
        if auc is not None:
            fpr, tpr, _ = roc_curve(truth[:, k], scored.scores[:, k])
            axes.plot(fpr, tpr, color=np.array(class_color(k)) / 255, label=f"{name} (AUC {auc:.3f})")
    _frame(axes, "Per class, one against the rest")
    if group:
        axes = figure.add_subplot(1, panels, 2)
        columns = scored.class_indices(group["classes"])
        has_type, score, _ = group_scores(truth, scored.scores, scored.calls, columns, scored.multi_label)
        colour = np.array(GROUP_COLOUR) / 255
        if group["auc"] is not None:
            fpr, tpr, _ = roc_curve(has_type, score)
            axes.plot(fpr, tpr, color=colour, label=f"AUC {group['auc']:.3f}")
        if group["sensitivity"] is not None and group["specificity"] is not None:
            axes.plot(1 - group["specificity"], group["sensitivity"], "o", color=colour, label="called")
        names = group["classes"]
        _frame(axes, "Holds " + (" or ".join(names) if len(names) <= 3 else f"one of {len(names)} positive classes"))
    return png_bytes(figure)


def _frame(axes: Any, title: str) -> None:
    axes.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle=":")
    axes.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity", ylabel="sensitivity", title=title)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="lower right", fontsize="small")


def confusion_table(confusion: list[list[int]], classes: list[str]) -> str:
    """The confusion matrix as an HTML table, rows true and columns called, each cell shaded by its share of its row."""
    counts = np.asarray(confusion, dtype=np.int64).reshape(len(classes), len(classes))
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    head = "".join(f"<th>{html.escape(name)}</th>" for name in classes)
    rows = []
    for name, row, share in zip(classes, counts, shares, strict=True):
        cells = "".join(
            f'<td style="background: rgba(0, 114, 178, {0.8 * value:.2f})">{count}</td>'
            for count, value in zip(row, share, strict=True)
        )
        rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return f'<table class="confusion"><tr><th>true \\ called</th>{head}</tr>{"".join(rows)}</table>'


def call_counts_table(scored: ScoredPatches) -> str:
    """Per type, the patches called rightly and wrongly (a multi-label classifier's confusion), as an HTML table."""
    counts = multilabel_confusion_matrix(scored.truth, scored.calls, labels=range(len(scored.classes)))
    rows = {
        name: {"true positive": tp, "false positive": fp, "false negative": fn, "true negative": tn}
        for name, ((tn, fp), (fn, tp)) in zip(scored.classes, counts.tolist(), strict=True)
    }
    return figure_table(rows, "type")


def _gallery(scored: ScoredPatches, worst: int) -> str:
    wrong = int(scored.wrong().sum())
    if not wrong:
        return "<p>No patch is misclassified.</p>"
    shown = misclassified(scored, worst)
    figures = []
    for index, picture in zip(shown, patch_pictures(scored, shown), strict=True):
        with io.BytesIO() as buffer:
            Image.fromarray(picture).save(buffer, format="PNG")
            image = embedded_png(buffer.getvalue(), scored.images[scored.patches[index].image].image_id)
        figures.append(f"<figure>{image}<figcaption>{html.escape(caption(scored, index))}</figcaption></figure>")
    intro = f"The {len(shown)} most confident mistakes of {wrong} misclassified patches of {len(scored)}."
    return f'<p>{intro}</p><div class="gallery">{"".join(figures)}</div>'


def write_classification_report(
    figures: dict[str, Any], scored: ScoredPatches, folder: str | Path, title: str, worst: int = 24
) -> Path:
    """Write the report of a classifier (see the module docstring) to ``folder``.

    Args:
        figures: The figures of :func:`~cytolens.metrics.patch_classification.patch_metrics` on ``scored``; a
            ``model`` entry names the model, ``views`` the test-time views averaged.
        scored: The patches that were scored.
        folder: Output folder (created if needed).
        title: What was evaluated (the data's name).
        worst: How many misclassified patches the gallery shows.

    Returns:
        The path of ``report.html``.

    """
    folder = Path(folder)
    write_text(folder / "metrics.json", json.dumps(json_safe(figures), indent=2) + "\n")
    roc = plot_roc_curves(scored, figures)
    write_bytes(folder / "roc_curves.png", roc)
    group = figures.get("positive")
    summary = {
        "Model": figures.get("model", "-"),
        "Data": f"{title} ({figures['patches']} patches from {figures['images']} images)",
        "Labels": "several types per patch" if figures["multi_label"] else "one type per patch",
    }
    if "views" in figures:
        summary["Test-time views"] = figures["views"]
    if group:
        summary["Positive group"] = ", ".join(group["classes"])
    overall = {name: value for name, value in figures.items() if is_figure(value) and name not in _COUNTS}
    body = ["<h2>Overall</h2>", figure_table({"all classes": overall}, "")]
    body.append("<p>Sensitivity, specificity, H-mean, F1 and AUC are macro averages over the classes.</p>")
    if group:
        body += ["<h2>Positive group: holds " + html.escape(" or ".join(group["classes"])) + "</h2>"]
        body.append(figure_table({"group": {k: v for k, v in group.items() if k != "classes"}}, ""))
    body += ["<h2>Per class</h2>", figure_table(figures["per_class"], "class")]
    body += ["<h2>ROC curves</h2>", f"<figure>{embedded_png(roc, 'ROC curves')}</figure>"]
    if "confusion" in figures:
        body += ["<h2>Confusion matrix</h2>", confusion_table(figures["confusion"], scored.classes)]
    else:
        body += ["<h2>Calls per type</h2>", call_counts_table(scored)]
    body += ["<h2>Misclassified patches</h2>", _gallery(scored, worst)]
    write_text(folder / "report.html", html_page(title, summary, "\n".join(body), _STYLE))
    return folder / "report.html"
