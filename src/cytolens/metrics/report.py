"""The evaluation report of a detector: ``metrics.json``, plots, and one self-contained HTML page.

:func:`write_report` writes, atomically, to one folder:

- ``metrics.json``: every figure of :func:`~cytolens.metrics.evaluate_datasets` (or of
  :func:`~cytolens.inference.evaluate.evaluate_model`), details included;
- ``pr_curves.png``: precision-recall curves per class at IoU 0.5 (boxes);
- ``count_errors.png``: predicted against true cell counts per image, one panel per class;
- ``report.html``: the overall and per-class figures, those plots, and a gallery of the images with
  the lowest F1, drawn with matched, missed and false cells (see :mod:`cytolens.metrics.gallery`).
  Pictures are embedded as base64 PNG, so the page is a single file to share.

The page's frame (:func:`html_page`), its tables of figures and embedded pictures serve the report of a
classifier too (:mod:`cytolens.metrics.classification_report`).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from cytolens._version import __version__
from cytolens.data.annotations import Dataset
from cytolens.io.atomic import write_bytes, write_text
from cytolens.io.colors import class_color
from cytolens.metrics.boxes import plot_pr_curves
from cytolens.metrics.gallery import (
    IOU_THRESHOLD,
    OUTCOME_COLORS,
    ImageOutcome,
    draw_outcome,
    image_outcomes,
    worst_images,
)
from cytolens.metrics.numbers import is_figure, json_safe
from cytolens.results.thresholds import describe as describe_threshold

RESEARCH_ONLY = "For research use only, not for diagnosis."

OUTCOME_MEANINGS = {"matched": "true positive", "missed": "false negative", "false": "false positive"}

LABELS = {
    "map50": "mAP@0.5",
    "map50_95": "mAP@[.5:.95]",
    "ap50": "AP50",
    "ap50_95": "AP50-95",
    "recall": "recall",
    "count": "true cells",
    "count_mae": "count MAE",
    "count_relative_error": "count relative error",
    "predicted": "predicted count",
    "true": "true count",
    "mean_distance": "mean distance (px)",
    "class_accuracy": "class accuracy",
    "macro_f1": "macro F1",
    "weighted_f1": "weighted F1",
    "f1": "F1",
    "auc": "AUC",
    "h_mean": "H-mean",
    "exact_match": "exact match",
    "hamming": "Hamming loss",
    "tp": "TP",
    "fp": "FP",
    "tn": "TN",
    "fn": "FN",
}
"""Column headings for figure names; other names are shown as they are."""

_PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>cytolens evaluation: $title</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
.notice { border: 2px solid #d55e00; padding: 0.6em 1em; font-weight: bold; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border-bottom: 1px solid #ccc; padding: 0.25em 0.8em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.swatch { display: inline-block; width: 1em; height: 1em; vertical-align: middle; margin: 0 0.3em 0 1em; }
figure { margin: 1em 0 2em; }
img { max-width: 100%; }
$style
</style>
</head>
<body>
<h1>cytolens evaluation report</h1>
<p class="notice">$notice</p>
<table>$summary</table>
$body
<p><small>cytolens $version</small></p>
</body>
</html>
""")


def html_page(title: str, summary: dict[str, Any], body: str, style: str = "") -> str:
    """The report page: the research-use notice, a summary table (``summary``: heading to value), then ``body``.

    Args:
        title: What was evaluated (the page's title).
        summary: Rows of the summary table, values shown as text.
        body: The sections, as HTML.
        style: More CSS rules.

    """
    return _PAGE.substitute(
        title=html.escape(title),
        notice=RESEARCH_ONLY,
        style=style,
        summary="".join(
            f"<tr><th>{html.escape(key)}</th><td>{html.escape(str(value))}</td></tr>" for key, value in summary.items()
        ),
        body=body,
        version=__version__,
    )


def figure_table(rows: dict[str, dict[str, Any]], index_name: str) -> str:
    """An HTML table of figures, one row per key of ``rows`` (columns headed by :data:`LABELS`); undefined figures
    shown as a dash; columns holding other than figures left out.
    """
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame = frame[[column for column in frame.columns if all(is_figure(value) for value in frame[column])]]
    frame = frame.rename(columns=LABELS).rename_axis(index_name).reset_index()
    return frame.to_html(index=False, na_rep="–", float_format=lambda value: f"{value:.3f}", border=0)


def png_bytes(figure: Figure) -> bytes:
    """A Matplotlib figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def embedded_png(png: bytes, alt: str) -> str:
    """An ``<img>`` element holding the PNG itself (base64), so that the page is one file."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def plot_count_errors(counting: dict[str, Any]) -> bytes:
    """Predicted against true counts per image, one panel per class, as PNG bytes.

    Args:
        counting: The counting figures (:func:`~cytolens.metrics.count_metrics`): ``per_class`` and
            ``per_image`` with ``<class>_pred`` and ``<class>_true``.

    """
    names = list(counting["per_class"])
    columns = min(len(names), 4)
    rows = math.ceil(len(names) / columns)
    figure = Figure(figsize=(3.2 * columns, 3.2 * rows), dpi=100, layout="constrained")
    for k, name in enumerate(names):
        axes = figure.add_subplot(rows, columns, k + 1)
        true = [image[f"{name}_true"] for image in counting["per_image"]]
        predicted = [image[f"{name}_pred"] for image in counting["per_image"]]
        top = max([*true, *predicted, 1]) * 1.05
        axes.plot([0, top], [0, top], color="grey", linewidth=1)
        axes.scatter(true, predicted, s=14, color=np.array(class_color(k)) / 255)
        mae = counting["per_class"][name]["count_mae"]
        axes.set(xlim=(0, top), ylim=(0, top), xlabel="true count", ylabel="predicted count")
        axes.set_title(f"{name} (MAE {mae:.2f})" if mae is not None else name)
    return png_bytes(figure)


def _gallery(outcomes: list[ImageOutcome], worst: int, class_names: list[str]) -> str:
    """The gallery section: the legend, then the ``worst`` images with errors, each with its caption."""
    if not outcomes:
        return "<p>The ground truth holds no cells to compare.</p>"
    rule = (
        f"A predicted box matches a true box of the same class at IoU &ge; {IOU_THRESHOLD:g}"
        if outcomes[0].kind == "boxes"
        else "A predicted point matches a true point within the matching radius"
    )
    flawed = worst_images(outcomes, len(outcomes))
    if not flawed:
        return "<p>No image has missed or false cells.</p>"
    legend = "".join(
        f'<span class="swatch" style="background: rgb{OUTCOME_COLORS[name]}"></span>{name} ({meaning})'
        for name, meaning in OUTCOME_MEANINGS.items()
    )
    figures = []
    for outcome in flawed[:worst]:
        caption = (
            f"{html.escape(outcome.truth.image_id)}: F1 {outcome.f1:.3f}, matched {outcome.tp}, "
            f"missed {outcome.fn}, false {outcome.fp}"
        )
        with io.BytesIO() as buffer:
            Image.fromarray(draw_outcome(outcome, class_names)).save(buffer, format="PNG")
            picture = embedded_png(buffer.getvalue(), outcome.truth.image_id)
        figures.append(f"<figure>{picture}<figcaption>{caption}</figcaption></figure>")
    shown = f"The {len(figures)} images with the lowest F1 of {len(flawed)} with errors"
    return f"<p>{shown}. {rule}.</p><p>{legend}</p>" + "\n".join(figures)


def write_report(
    figures: dict[str, Any],
    predictions: Dataset,
    truth: Dataset,
    folder: str | Path,
    radius: float | None = None,
    worst: int = 8,
) -> Path:
    """Write the evaluation report (see the module docstring) to ``folder``.

    Args:
        figures: The figures of :func:`~cytolens.metrics.evaluate_datasets`; a ``score_threshold``
            entry (as :func:`~cytolens.inference.evaluate.evaluate_model` adds) limits the gallery's
            boxes to those scoring at least it, and ``model`` names the model.
        predictions: The predictions that were scored.
        truth: The ground truth.
        folder: Output folder (created if needed).
        radius: Point-matching radius in pixels (needed when the truth holds points).
        worst: How many images the gallery shows.

    Returns:
        The path of ``report.html``.

    Raises:
        CytolensError: If the truth holds points and ``radius`` is ``None``.

    """
    folder = Path(folder)
    details = figures.get("details", {})
    write_text(folder / "metrics.json", json.dumps(json_safe(figures), indent=2, default=str) + "\n")
    plots = []
    curves = details.get("boxes", {}).get("pr_curves")
    if curves:
        plot_pr_curves(curves, folder / "pr_curves.png")
        plots.append(("Precision-recall curves", (folder / "pr_curves.png").read_bytes()))
    counting = details.get("counting")
    if counting and counting["per_image"]:
        png = plot_count_errors(counting)
        write_bytes(folder / "count_errors.png", png)
        plots.append(("Cell counts per image", png))
    threshold = figures.get("score_threshold")
    summary = {
        "Model": figures.get("model", predictions.name),
        "Data": f"{truth.name} ({len(truth)} images)",
        "Score threshold (gallery and counts)": describe_threshold(threshold),
    }
    if radius is not None:
        summary["Matching radius"] = f"{radius:g} px"
    overall = {name: value for name, value in figures.items() if is_figure(value) and name != "score_threshold"}
    pictures = "".join(f"<h2>{title}</h2><figure>{embedded_png(png, title)}</figure>" for title, png in plots)
    body = (
        "<h2>Overall</h2>\n"
        + (figure_table({"all classes": overall}, "") if overall else "<p>No overall figures.</p>")
        + "\n<h2>Per class</h2>\n"
        + figure_table(figures.get("per_class", {}), "class")
        + f"\n{pictures}\n<h2>Worst images</h2>\n"
        + _gallery(image_outcomes(predictions, truth, threshold, radius), worst, list(truth.classes))
    )
    write_text(folder / "report.html", html_page(str(truth.name), summary, body))
    return folder / "report.html"
