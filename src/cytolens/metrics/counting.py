"""Counting metrics: how far the number of predicted cells per image and class is from the truth.

Boxes and points both count, under their class; unclassified points count under ``"unclassified"``,
which appears as a class only when the truth or the predictions hold some. All predictions count:
apply a score threshold before calling :func:`count_metrics`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cytolens.data.annotations import Dataset
from cytolens.metrics.numbers import class_counts, json_safe, mean_defined, ratio
from cytolens.metrics.pairing import align_predictions

UNCLASSIFIED_NAME = "unclassified"


def _count_table(dataset: Dataset, n_classes: int) -> np.ndarray:
    """``(images, n_classes + 1)`` objects per image and class, unclassified ones in the last column."""
    table = np.zeros((len(dataset), n_classes + 1), dtype=np.int64)
    for row, image in enumerate(dataset):
        labels = image.cells.labels
        table[row] = class_counts(np.where(labels < 0, n_classes, labels), n_classes + 1)
    return table


def count_metrics(predictions: Dataset, truth: Dataset) -> dict[str, Any]:
    """Predicted against true object counts per image and class.

    Args:
        predictions: Predicted boxes and points; images matched to ``truth`` by ``image_id`` (an
            image without predictions counts zero), classes by name.
        truth: True boxes and points.

    Returns:
        ``count_mae``: the mean over classes of each class's mean absolute count error over images;
        ``per_class`` mapping each class name to ``count_mae``, ``count_relative_error``
        (``sum |predicted - true| / sum true``, ``None`` when the class has no true objects),
        ``predicted`` and ``true`` (totals); ``per_image``: one dict per ground-truth image with
        ``image_id`` and ``<class>_pred``, ``<class>_true`` for every class.

    """
    predictions = align_predictions(predictions, truth)
    n_classes = len(truth.classes)
    predicted, true = _count_table(predictions, n_classes), _count_table(truth, n_classes)
    names = list(truth.classes)
    if (predicted[:, -1] + true[:, -1]).any():
        names.append(UNCLASSIFIED_NAME)
    predicted, true = predicted[:, : len(names)], true[:, : len(names)]
    errors = np.abs(predicted - true)
    mae = errors.mean(axis=0) if len(errors) else np.full(len(names), np.nan)
    relative = ratio(errors.sum(axis=0), true.sum(axis=0))
    per_class = {
        name: {
            "count_mae": mae[k],
            "count_relative_error": relative[k],
            "predicted": predicted[:, k].sum(),
            "true": true[:, k].sum(),
        }
        for k, name in enumerate(names)
    }
    per_image = [
        {
            "image_id": image.image_id,
            **{
                f"{name}_{kind}": table[row, k]
                for k, name in enumerate(names)
                for kind, table in (("pred", predicted), ("true", true))
            },
        }
        for row, image in enumerate(truth)
    ]
    return json_safe({"count_mae": mean_defined(mae), "per_class": per_class, "per_image": per_image})
