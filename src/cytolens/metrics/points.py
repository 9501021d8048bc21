"""Point detection metrics: predicted cell centres paired one-to-one with true centres within a radius.

:func:`match_points` pairs points like tiatoolbox's ``pair_coordinates``: an optimal assignment
(Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`) in which a predicted and a true
point may pair only when they are at most ``radius`` apart (inclusive). Among all such pairings it
takes one with the most pairs and, among those, the smallest total distance.

:func:`point_metrics` counts a matched prediction as a true positive whatever the classes; the class
figures are then computed over the matched pairs. All predictions count: apply a score threshold
before calling it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from sklearn.metrics import f1_score

from cytolens.data.annotations import Dataset
from cytolens.metrics.numbers import class_counts, concatenated, f1_from_counts, json_safe, ratio
from cytolens.metrics.pairing import align_predictions


def match_points(pred: np.ndarray, true: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Pair predicted with true points one-to-one, at most ``radius`` apart.

    Args:
        pred: ``(P, 2)`` predicted ``x, y``.
        true: ``(T, 2)`` true ``x, y``.
        radius: Largest distance (pixels, inclusive) at which two points may pair.

    Returns:
        ``(K, 2)`` int array of ``(pred_index, true_index)`` pairs and the ``(K,)`` distances of the
        pairs. ``K`` is the largest possible number of pairs, and the total distance is the smallest
        among pairings of that size.

    Raises:
        ValueError: If ``radius`` is negative.

    """
    if radius < 0:
        raise ValueError(f"radius must not be negative, got {radius}")
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    true = np.asarray(true, dtype=np.float64).reshape(-1, 2)
    if not len(pred) or not len(true):
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    distances = cdist(pred, true)
    allowed = distances <= radius
    # A forbidden pair costs more than any set of allowed pairs can, so the assignment first
    # minimises the number of forbidden pairs (maximises matches), then the total distance.
    forbidden_cost = min(len(pred), len(true)) * radius + 1.0
    rows, cols = linear_sum_assignment(np.where(allowed, distances, forbidden_cost))
    keep = allowed[rows, cols]
    rows, cols = rows[keep], cols[keep]
    return np.column_stack([rows, cols]).astype(np.int64), distances[rows, cols]


def point_metrics(predictions: Dataset, truth: Dataset, radius: float) -> dict[str, Any]:
    """Detection and classification figures of predicted points against true points.

    Args:
        predictions: Predicted points; images matched to ``truth`` by ``image_id``, classes by name.
        truth: True points; unclassified ones count for detection only.
        radius: Largest distance (pixels) between a predicted and a true point that match.

    Returns:
        Class-agnostic detection over all images: ``tp``, ``fp``, ``fn``, ``precision``, ``recall``,
        ``f1``, ``mean_distance`` (over matched pairs). Over the matched pairs whose true point is
        classified (a prediction without a known class counts as wrong): ``class_accuracy``,
        ``macro_f1`` and ``weighted_f1`` (scikit-learn, over the true classes of those pairs).
        ``per_class`` maps each class name to ``precision``, ``recall``, ``f1`` and ``count`` (true
        points) where a true positive of class c is a matched pair whose predicted and true class are
        both c. ``per_image`` lists ``{image_id, tp, fp, fn, f1}``. Undefined figures are ``None``.

    """
    predictions = align_predictions(predictions, truth)
    n_classes = len(truth.classes)
    per_image, distances, true_labels, pred_labels = [], [], [], []
    class_tp, class_pred, class_true = (np.zeros(n_classes, dtype=np.int64) for _ in range(3))
    for true_image, pred_image in zip(truth.images, predictions.images, strict=True):
        true, pred = true_image.cells.point_cells(), pred_image.cells.point_cells()
        pairs, pair_distances = match_points(pred.centres, true.centres, radius)
        tp = len(pairs)
        fp, fn = len(pred) - tp, len(true) - tp
        f1 = f1_from_counts(tp, fp, fn)
        per_image.append({"image_id": true_image.image_id, "tp": tp, "fp": fp, "fn": fn, "f1": f1})
        distances.append(pair_distances)
        matched_true = true.labels[pairs[:, 1]]
        matched_pred = pred.labels[pairs[:, 0]]
        true_labels.append(matched_true)
        pred_labels.append(matched_pred)
        class_tp += class_counts(np.where(matched_true == matched_pred, matched_true, -1), n_classes)
        class_pred += class_counts(pred.labels, n_classes)
        class_true += class_counts(true.labels, n_classes)
    tp, fp, fn = (sum(row[key] for row in per_image) for key in ("tp", "fp", "fn"))
    distances = concatenated(distances, np.float64)
    y_true, y_pred = concatenated(true_labels), concatenated(pred_labels)
    classified = y_true >= 0
    y_true, y_pred = y_true[classified], y_pred[classified]
    present = np.unique(y_true)
    per_class = {
        name: {"precision": precision, "recall": recall, "f1": f1, "count": count}
        for name, precision, recall, f1, count in zip(
            truth.classes,
            ratio(class_tp, class_pred),
            ratio(class_tp, class_true),
            f1_from_counts(class_tp, class_pred - class_tp, class_true - class_tp),
            class_true,
            strict=True,
        )
    }
    return json_safe(
        {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, tp + fn),
            "f1": f1_from_counts(tp, fp, fn),
            "mean_distance": distances.mean() if len(distances) else None,
            "class_accuracy": (y_true == y_pred).mean() if len(y_true) else None,
            "macro_f1": _f1(y_true, y_pred, present, "macro"),
            "weighted_f1": _f1(y_true, y_pred, present, "weighted"),
            "per_class": per_class,
            "per_image": per_image,
        }
    )


def _f1(y_true: np.ndarray, y_pred: np.ndarray, labels: np.ndarray, average: str) -> float | None:
    if not len(y_true):
        return None
    return float(f1_score(y_true, y_pred, labels=labels, average=average, zero_division=0))
