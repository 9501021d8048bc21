"""One call that evaluates predictions against ground truth with every metric that applies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cytolens.data.annotations import Dataset
from cytolens.data.cells import ScoreThreshold
from cytolens.errors import CytolensError, DataError
from cytolens.io.validation import check_number
from cytolens.metrics.boxes import box_ap
from cytolens.metrics.classification import image_classification_metrics
from cytolens.metrics.counting import count_metrics
from cytolens.metrics.pairing import align_predictions
from cytolens.metrics.points import point_metrics
from cytolens.metrics.unlabelled import drop_unlabelled_detections

TOP_LEVEL_KEYS: dict[str, tuple[str, ...]] = {
    "boxes": ("map50", "map50_95"),
    "points": ("precision", "recall", "f1", "mean_distance", "class_accuracy", "macro_f1", "weighted_f1"),
    "classification": ("accuracy", "auc", "sensitivity", "specificity", "h_mean", "exact_match"),
    "counting": ("count_mae",),
}
"""Figures lifted to the top of :func:`evaluate_datasets`' result, by the part that computes them."""


def _named_classes(dataset: Dataset) -> set[str]:
    """The classes that some cell, image label or image score of ``dataset`` refers to."""
    used: set[int] = set()
    for image in dataset:
        if image.image_scores is not None:
            return set(dataset.classes)
        used.update(int(label) for label in (*image.cells.labels, *image.image_labels))
    return {dataset.classes[label] for label in used if label >= 0}


def _listed(names: set[str], limit: int = 5) -> str:
    shown = sorted(names)
    return ", ".join(shown[:limit]) + (f" ... ({len(shown)} in all)" if len(shown) > limit else "")


def check_overlap(predictions: Dataset, truth: Dataset, source: str | Path | None = None) -> None:
    """Refuse predictions that cannot be scored against ``truth``: no image in common, or no class in common.

    Either would score every figure as 0 (or undefined) for a mismatch of names rather than of cells:
    predictions of another dataset or split, or of a model trained on other classes.

    Args:
        predictions: The predictions.
        truth: The ground truth.
        source: The predictions file, named in the error (``None``: a :class:`CytolensError` without file).

    Raises:
        DataError: If no predicted image id is a ground-truth image id, or the classes the predictions
            name (by their objects or image scores) and those the truth names are disjoint.
        CytolensError: Likewise when ``source`` is ``None``.

    """
    problem = None
    truth_ids = {image.image_id for image in truth}
    predicted_ids = {image.image_id for image in predictions}
    predicted, true = _named_classes(predictions), _named_classes(truth)
    if truth_ids and not truth_ids & predicted_ids:
        problem = (
            f"the predictions share no image with the ground truth (predicted: {_listed(predicted_ids) or 'none'}; "
            f"ground truth: {_listed(truth_ids)})"
        )
    elif predicted and true and not predicted & true:
        problem = (
            f"the predicted classes ({_listed(predicted)}) share none with the ground truth's ({_listed(true)}); "
            "rename them with a spec's classes mapping"
        )
    if problem is not None:
        raise CytolensError(problem) if source is None else DataError(source, problem)


def evaluate_datasets(
    predictions: Dataset,
    truth: Dataset,
    radius: float | None = None,
    count_threshold: ScoreThreshold | None = None,
    ignore_unlabelled: bool = False,
    source: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate predictions with every metric the ground truth allows, merged into one JSON-ready dict.

    - Boxes in the truth: COCO AP (:func:`~cytolens.metrics.boxes.box_ap`) and counting.
    - Points in the truth: point matching within ``radius`` (:func:`~cytolens.metrics.points.point_metrics`)
      and counting.
    - Image labels in the truth and image scores in the predictions: classification
      (:func:`~cytolens.metrics.classification.image_classification_metrics`).

    Images are matched by ``image_id`` (ground-truth images without predictions count as empty) and
    classes by name.

    Args:
        predictions: The predictions (objects with scores and/or image scores).
        truth: The ground truth.
        radius: Matching radius in pixels for point annotations.
        count_threshold: Count only objects scoring at least this (a model's operating threshold, one value or
            one per class name), while
            average precision uses every prediction. ``None`` counts every prediction.
        ignore_unlabelled: The truth labels only some cells of an image: predicted points on unlabelled
            cells count neither as right nor as wrong
            (:func:`~cytolens.metrics.unlabelled.drop_unlabelled_detections`); ``ignored_detections`` says
            how many were left out.
        source: Where the predictions come from (their file), named when they cannot be scored.

    Returns:
        The figures of :data:`TOP_LEVEL_KEYS` that apply; ``per_class`` mapping each class name to
        that class's figures from every part (when two parts name a figure alike, the first of
        boxes, points, classification, counting wins); and ``details`` holding each part's full
        result (``boxes``, ``points``, ``classification``, ``counting``), including the
        precision-recall curves and the per-image tables.

    Raises:
        CytolensError: If the truth holds points and no radius (or one not above 0) was given, or there is
            nothing to evaluate.
        DataError: If the predictions share no image or no class with the truth (see :func:`check_overlap`).

    """
    check_overlap(predictions, truth, source)
    predictions = align_predictions(predictions, truth)
    has_boxes = any(image.cells.has_box.any() for image in truth)
    has_points = any((~image.cells.has_box).any() for image in truth)
    has_labels = any(image.image_labels for image in truth)
    has_scores = any(image.image_scores is not None for image in predictions)
    if has_points and radius is None:
        raise CytolensError("the ground truth holds points: pass --radius (pixels) to match predicted points")
    if has_points:
        radius = check_number(radius, "radius", low=0, low_open=True)
    ignored = None
    if ignore_unlabelled and has_points:
        predictions, ignored = drop_unlabelled_detections(predictions, truth, radius)
    details: dict[str, dict[str, Any]] = {}
    if has_boxes:
        details["boxes"] = box_ap(predictions, truth)
    if has_points:
        details["points"] = point_metrics(predictions, truth, radius)
    if has_labels and has_scores:
        details["classification"] = image_classification_metrics(predictions, truth)
    if has_boxes or has_points:
        details["counting"] = count_metrics(predictions.scoring_at_least(count_threshold), truth)
    if not details:
        raise CytolensError(
            "nothing to evaluate: the ground truth holds no boxes, points or image labels "
            "(or the predictions hold no image scores)"
        )
    result: dict[str, Any] = {
        key: part[key] for name, part in details.items() for key in TOP_LEVEL_KEYS[name] if key in part
    }
    per_class: dict[str, dict[str, Any]] = {}
    for part in details.values():
        for class_name, figures in part["per_class"].items():
            target = per_class.setdefault(class_name, {})
            for key, value in figures.items():
                target.setdefault(key, value)
    if ignored is not None:
        result["ignored_detections"] = ignored
    result["per_class"] = per_class
    result["details"] = details
    return result
