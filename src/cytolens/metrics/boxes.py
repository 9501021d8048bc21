"""Box detection metrics: COCO average precision, computed by pycocotools.

Ground truth and predictions are handed to pycocotools in memory as ``COCO`` objects. COCO boxes are
``[x, y, width, height]`` with the same origin and no +1 on the size, so cytolens' ``xyxy`` corners
convert as ``[x1, y1, x2 - x1, y2 - y1]``. Matching is COCO's: per image and class, detections in
descending score order greedily take the unmatched ground-truth box of highest IoU at or above the
threshold; AP is the mean interpolated precision at 101 recall points, averaged over the IoU
thresholds 0.50:0.05:0.95 for ``ap50_95``.

Departures from COCO's defaults:

- Blood smears hold far more than 100 cells per image, and COCO keeps only the 100 best-scored
  detections per image and class (``maxDets``). Here the limit is :data:`MAX_DETECTIONS` (1000).
- Only the ``all`` area range is evaluated (no small/medium/large breakdown).

Predicted boxes without scores count as scored 1.0.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cytolens.data.annotations import Dataset
from cytolens.io.atomic import write_bytes
from cytolens.metrics.numbers import class_counts, concatenated, json_safe, mean_defined
from cytolens.metrics.pairing import align_predictions

MAX_DETECTIONS = 1000
"""Detections per image and class that COCOeval considers (best scores first)."""


def _annotations(dataset: Dataset, scored: bool) -> list[dict[str, Any]]:
    """COCO annotation dicts for every box with a known class (image ids 1.., category ids 1..)."""
    annotations = []
    for image_number, image in enumerate(dataset.images, start=1):
        cells = image.cells.box_cells()
        scores = cells.scores if cells.scores is not None else np.ones(len(cells))
        for box, label, score in zip(cells.boxes, cells.labels, scores, strict=True):
            if label < 0:
                continue
            width, height = float(box[2] - box[0]), float(box[3] - box[1])
            annotation = {
                "id": len(annotations) + 1,  # COCOeval treats id 0 as "unmatched"
                "image_id": image_number,
                "category_id": int(label) + 1,
                "bbox": [float(box[0]), float(box[1]), width, height],
                "area": width * height,
                "iscrowd": 0,
            }
            if scored:
                annotation["score"] = float(score)
            annotations.append(annotation)
    return annotations


def _coco(truth: Dataset, annotations: list[dict[str, Any]]) -> COCO:
    coco = COCO()
    coco.dataset = {
        "images": [
            {"id": number, "width": image.width, "height": image.height}
            for number, image in enumerate(truth.images, start=1)
        ],
        "categories": [{"id": index + 1, "name": name} for index, name in enumerate(truth.classes)],
        "annotations": annotations,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _evaluated(truth: Dataset, predictions: Dataset, max_detections: int) -> COCOeval:
    gt, dt = _coco(truth, _annotations(truth, False)), _coco(truth, _annotations(predictions, True))
    evaluator = COCOeval(gt, dt, "bbox")
    params = evaluator.params
    params.maxDets = [max_detections]
    params.areaRng, params.areaRngLbl = params.areaRng[:1], params.areaRngLbl[:1]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def _mean_valid(precision: np.ndarray) -> float:
    """COCO's average over the precision entries that exist (-1 marks classes without ground truth)."""
    return mean_defined(np.where(precision > -1, precision, np.nan))


def box_ap(predictions: Dataset, truth: Dataset, max_detections: int = MAX_DETECTIONS) -> dict[str, Any]:
    """COCO average precision of predicted boxes against ground-truth boxes.

    Args:
        predictions: Predicted boxes with scores; images matched to ``truth`` by ``image_id``,
            classes by name (see :func:`~cytolens.metrics.pairing.align_predictions`).
        truth: Ground-truth boxes.
        max_detections: Best-scored detections per image and class that count.

    Returns:
        ``map50`` and ``map50_95`` (means over the classes that have ground truth); ``per_class``
        mapping each class name to ``ap50``, ``ap50_95``, ``recall`` (the highest recall reached at
        IoU 0.5) and ``count`` (ground-truth boxes); ``pr_curves`` mapping each class with ground
        truth to its interpolated precision-recall curve at IoU 0.5 (``recall``: COCO's 101 recall
        points, ``precision``: the precision there). Undefined figures (a class without ground
        truth) are ``None``.

    """
    predictions = align_predictions(predictions, truth)
    evaluator = _evaluated(truth, predictions, max_detections)
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # IoU threshold, recall point, class
    recall = evaluator.eval["recall"][0, :, 0, -1]  # IoU 0.5, class
    counts = class_counts(concatenated(image.cells.box_cells().labels for image in truth.images), len(truth.classes))
    per_class, curves = {}, {}
    for k, name in enumerate(truth.classes):
        per_class[name] = {
            "ap50": _mean_valid(precision[0, :, k]),
            "ap50_95": _mean_valid(precision[:, :, k]),
            "recall": float(recall[k]) if recall[k] > -1 else None,
            "count": int(counts[k]),
        }
        if counts[k]:
            curves[name] = {"recall": evaluator.params.recThrs, "precision": precision[0, :, k]}
    return json_safe(
        {
            "map50": _mean_valid(precision[0]),
            "map50_95": _mean_valid(precision),
            "per_class": per_class,
            "pr_curves": curves,
        }
    )


def plot_pr_curves(curves: dict[str, dict[str, list[float]]], path: str | Path) -> None:
    """Draw precision-recall curves (as returned in ``box_ap(...)["pr_curves"]``) to a PNG file.

    Each curve is labelled with its class name and AP50, which is the mean of its precision values.
    """
    figure = Figure(figsize=(6, 5), dpi=100)
    axes = figure.add_subplot()
    for name, curve in curves.items():
        axes.plot(curve["recall"], curve["precision"], label=f"{name} (AP50 {np.mean(curve['precision']):.3f})")
    axes.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.02), title="Precision-recall at IoU 0.5")
    axes.grid(alpha=0.3)
    if curves:
        axes.legend(loc="lower left")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes(path, buffer.getvalue())
