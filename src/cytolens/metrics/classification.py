"""Image- or cell-level classification metrics, single-label and multi-label, and their mean over folds.

Per-class figures come from one-vs-rest confusion counts (scikit-learn's
``multilabel_confusion_matrix``): sensitivity ``TP / (TP + FN)``, specificity ``TN / (TN + FP)``,
F1 ``2 TP / (2 TP + FP + FN)`` and ROC-AUC (``roc_auc_score`` of the class's scores). A figure whose
denominator is zero (a class absent from both truth and predictions, or an AUC with one side empty)
is undefined (``None``) and left out of the macro averages.
"""

from __future__ import annotations

import numbers
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    hamming_loss,
    multilabel_confusion_matrix,
    roc_auc_score,
)

from cytolens.data.annotations import Dataset
from cytolens.metrics.numbers import f1_from_counts, json_safe, mean_defined, ratio
from cytolens.metrics.pairing import align_predictions


def _check_scores(y_score: np.ndarray, n_rows: int, classes: list[str]) -> np.ndarray:
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_score.shape != (n_rows, len(classes)):
        raise ValueError(f"y_score has shape {y_score.shape}, expected ({n_rows}, {len(classes)})")
    return y_score


def _per_class(indicator: np.ndarray, predicted: np.ndarray, y_score: np.ndarray) -> dict[str, np.ndarray]:
    """One-vs-rest figures per class from ``(N, C)`` 0/1 truth, 0/1 predictions and scores."""
    counts = multilabel_confusion_matrix(indicator, predicted)
    tn, fp, fn, tp = counts[:, 0, 0], counts[:, 0, 1], counts[:, 1, 0], counts[:, 1, 1]
    auc = [
        roc_auc_score(column, scores) if 0 < column.sum() < len(column) else np.nan
        for column, scores in zip(indicator.T, y_score.T, strict=True)
    ]
    return {
        "auc": np.asarray(auc, dtype=np.float64),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "f1": f1_from_counts(tp, fp, fn),
        "support": tp + fn,
    }


def _summary(figures: dict[str, np.ndarray], classes: list[str]) -> dict[str, Any]:
    """Macro averages of the per-class figures, their harmonic mean, and the per-class table."""
    sensitivity, specificity = mean_defined(figures["sensitivity"]), mean_defined(figures["specificity"])
    return {
        "auc": mean_defined(figures["auc"]),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "h_mean": ratio(2 * sensitivity * specificity, sensitivity + specificity),
        "f1": mean_defined(figures["f1"]),
        "per_class": {name: {key: values[k] for key, values in figures.items()} for k, name in enumerate(classes)},
    }


def classification_metrics(y_true: np.ndarray, y_score: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Figures of a single-label classifier; the predicted class is the one with the highest score.

    Args:
        y_true: ``(N,)`` true class indices.
        y_score: ``(N, C)`` scores (probabilities or logits) per class.
        classes: The ``C`` class names.

    Returns:
        ``accuracy``; macro ``auc`` (one-vs-rest; with two classes, the AUC of the second class's
        score, the usual binary AUC), ``sensitivity`` (macro recall), ``specificity``, ``h_mean`` (their
        harmonic mean) and ``f1``; ``weighted_f1`` (weighted by support); ``confusion`` (rows true,
        columns predicted); ``per_class`` mapping each name to ``auc``, ``sensitivity``,
        ``specificity``, ``f1`` and ``support``.

    Raises:
        ValueError: If the shapes disagree or a label is outside ``0 .. C - 1``.

    """
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_score = _check_scores(y_score, len(y_true), classes)
    if len(y_true) and (y_true.min() < 0 or y_true.max() >= len(classes)):
        raise ValueError(f"y_true holds labels outside 0..{len(classes) - 1}")
    y_pred = y_score.argmax(axis=1)
    eye = np.eye(len(classes), dtype=np.int64)
    figures = _per_class(eye[y_true], eye[y_pred], y_score)
    result = _summary(figures, classes)
    if len(classes) == 2:
        result["auc"] = figures["auc"][1]
    result.update(
        accuracy=accuracy_score(y_true, y_pred),
        weighted_f1=ratio(np.nansum(figures["f1"] * figures["support"]), figures["support"].sum()),
        confusion=confusion_matrix(y_true, y_pred, labels=np.arange(len(classes))),
    )
    return json_safe(result)


def multilabel_metrics(
    y_true: np.ndarray,
    y_score: np.ndarray,
    classes: list[str],
    threshold: float | np.ndarray = 0.5,
    y_pred: np.ndarray | None = None,
) -> dict[str, Any]:
    """Figures of a multi-label classifier; a label is predicted when its score is at least ``threshold``.

    Args:
        y_true: ``(N, C)`` 0/1 truth.
        y_score: ``(N, C)`` scores per label.
        classes: The ``C`` label names.
        threshold: Score from which a label counts as predicted: one value, or ``(C,)`` one per label.
        y_pred: ``(N, C)`` 0/1 predicted labels, when they are not the scores at ``threshold`` (a
            single-label model's most probable class, say); ``threshold`` is then unused.

    Returns:
        ``exact_match`` (share of samples with every label right), ``accuracy`` (share of right
        labels) and ``hamming`` (share of wrong labels, ``1 - accuracy``), macro ``auc``,
        ``sensitivity``, ``specificity``, ``h_mean`` and ``f1``, and ``per_class`` mapping each name to
        ``auc``, ``sensitivity``, ``specificity``, ``f1`` and ``support``.

    Raises:
        ValueError: If the shapes disagree.

    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_score = _check_scores(y_score, len(y_true), classes)
    y_true = y_true.reshape(y_score.shape)
    if y_pred is None:
        y_pred = (y_score >= np.asarray(threshold, dtype=np.float64)).astype(np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(y_score.shape)
    result = _summary(_per_class(y_true, y_pred, y_score), classes)
    result.update(
        exact_match=accuracy_score(y_true, y_pred),
        accuracy=(y_true == y_pred).mean() if y_true.size else np.nan,
        hamming=hamming_loss(y_true, y_pred) if y_true.size else np.nan,
    )
    return json_safe(result)


def group_scores(
    y_true: np.ndarray, y_score: np.ndarray, y_pred: np.ndarray, positive: Sequence[int], multi_label: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class truth, scores and calls collapsed to one question: whether a sample holds a ``positive`` class.

    Args:
        y_true: ``(N, C)`` 0/1 truth.
        y_score: ``(N, C)`` probabilities.
        y_pred: ``(N, C)`` 0/1 calls.
        positive: Indices of the classes that make the group (e.g. the abnormal types).
        multi_label: Whether the probabilities are independent sigmoids (else they sum to 1 over the classes).

    Returns:
        Per sample: whether it truly holds a group class (bool), its group score (single-label: the summed
        probability of the group's classes; multi-label: the highest of them), and whether it is called
        positive (single-label: group score at least 0.5, the most probable side of the two; multi-label:
        any group class called).

    """
    columns = np.asarray(positive, dtype=np.int64)
    truth = np.asarray(y_true)[:, columns].any(axis=1)
    score = np.asarray(y_score, dtype=np.float64)[:, columns]
    if multi_label:
        return truth, score.max(axis=1, initial=0.0), np.asarray(y_pred)[:, columns].any(axis=1)
    score = score.sum(axis=1)
    return truth, score, score >= 0.5


def binary_metrics(truth: np.ndarray, score: np.ndarray, called: np.ndarray) -> dict[str, Any]:
    """Figures of a yes/no call (e.g. "abnormal"), with its score for the ROC-AUC.

    Args:
        truth: ``(N,)`` bool, the true answer.
        score: ``(N,)`` the score ranking the samples (higher: more likely yes).
        called: ``(N,)`` bool, the call.

    Returns:
        ``sensitivity`` ``TP / (TP + FN)``, ``specificity`` ``TN / (TN + FP)``, ``h_mean`` (their harmonic
        mean), ``accuracy``, ``f1``, ``auc`` (``None`` when one side is empty), ``positives`` and
        ``negatives`` (true counts) and the ``tp``, ``fp``, ``tn``, ``fn`` counts.

    """
    truth, called = np.asarray(truth, dtype=bool), np.asarray(called, dtype=bool)
    tp, fp = int((truth & called).sum()), int((~truth & called).sum())
    fn, tn = int((truth & ~called).sum()), int((~truth & ~called).sum())
    sensitivity, specificity = ratio(tp, tp + fn), ratio(tn, tn + fp)
    return json_safe(
        {
            "sensitivity": sensitivity,
            "specificity": specificity,
            "h_mean": ratio(2 * sensitivity * specificity, sensitivity + specificity),
            "accuracy": ratio(tp + tn, len(truth)),
            "f1": f1_from_counts(tp, fp, fn),
            "auc": roc_auc_score(truth, score) if 0 < truth.sum() < len(truth) else np.nan,
            "positives": tp + fn,
            "negatives": tn + fp,
            "tp": tp,
            "fp": fp,
            "tn": tn,
            "fn": fn,
        }
    )


def image_classification_metrics(predictions: Dataset, truth: Dataset, threshold: float = 0.5) -> dict[str, Any]:
    """Image-level figures from ``image_scores`` in ``predictions`` against ``image_labels`` in ``truth``.

    Single-label (:func:`classification_metrics`) when every ground-truth image has exactly one
    label, multi-label (:func:`multilabel_metrics` at ``threshold``) otherwise. Images are matched by
    ``image_id`` and classes by name; an image without prediction scores scores 0 for every class.
    """
    predictions = align_predictions(predictions, truth)
    n_classes = len(truth.classes)
    y_score = np.array(
        [image.image_scores if image.image_scores is not None else np.zeros(n_classes) for image in predictions]
    ).reshape(-1, n_classes)
    if all(len(image.image_labels) == 1 for image in truth):
        return classification_metrics(np.array([image.image_labels[0] for image in truth]), y_score, truth.classes)
    y_true = np.zeros((len(truth), n_classes), dtype=np.int64)
    for row, image in enumerate(truth):
        y_true[row, image.image_labels] = 1
    return multilabel_metrics(y_true, y_score, truth.classes, threshold)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def aggregate_folds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread of every numeric figure over cross-validation folds.

    Args:
        results: One result dict per fold (as returned by the metric functions).

    Returns:
        The same nesting of dicts with every numeric leaf replaced by ``{"mean": m, "std": s}``,
        over the folds where it is defined (not ``None`` or NaN); ``std`` has ``ddof=1`` and is
        ``None`` with fewer than two defined values. Non-numeric leaves (lists, strings) are left out.

    """
    keys = list(dict.fromkeys(key for result in results for key in result))
    out: dict[str, Any] = {}
    for key in keys:
        values = [result[key] for result in results if result.get(key) is not None]
        if values and all(isinstance(value, Mapping) for value in values):
            out[key] = aggregate_folds(values)
        elif all(_is_number(value) for value in values):
            defined = [float(value) for value in values if np.isfinite(value)]
            out[key] = {
                "mean": statistics.fmean(defined) if defined else None,
                "std": statistics.stdev(defined) if len(defined) >= 2 else None,
            }
    return json_safe(out)
