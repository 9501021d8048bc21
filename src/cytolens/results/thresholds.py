"""Score thresholds: one for every class, or one per class (a model may store either)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from cytolens.data.annotations import AnnotatedImage

ScoreThreshold = float | Mapping[str, float]
"""A threshold for all classes, or a mapping of class name to threshold (classes not named: 0)."""


def threshold_per_label(threshold: ScoreThreshold, classes: Sequence[str], labels: np.ndarray) -> np.ndarray:
    """The threshold that applies to each object, given its class index (unclassified objects take the lowest).

    Raises:
        ValueError: If the mapping names a class that is not in ``classes``.

    """
    if not isinstance(threshold, Mapping):
        return np.full(len(labels), float(threshold))
    unknown = sorted(set(threshold) - set(classes))
    if unknown:
        raise ValueError(f"score thresholds name unknown classes {unknown} (classes: {', '.join(classes)})")
    per_class = np.array([float(threshold.get(name, 0.0)) for name in classes] + [min(threshold.values(), default=0.0)])
    return per_class[np.where(labels >= 0, labels, len(classes))]


def scoring_at_least(image: AnnotatedImage, threshold: ScoreThreshold | None, classes: Sequence[str]) -> AnnotatedImage:
    """The image's boxes and points scoring at least ``threshold`` (unscored objects, and all when ``None``, kept)."""
    if threshold is None:
        return image
    box_keep, point_keep = slice(None), slice(None)
    if image.box_scores is not None:
        box_keep = image.box_scores >= threshold_per_label(threshold, classes, image.box_labels)
    if image.point_scores is not None:
        point_keep = image.point_scores >= threshold_per_label(threshold, classes, image.point_labels)
    return replace(
        image,
        boxes=image.boxes[box_keep],
        box_labels=image.box_labels[box_keep],
        box_scores=None if image.box_scores is None else image.box_scores[box_keep],
        points=image.points[point_keep],
        point_labels=image.point_labels[point_keep],
        point_scores=None if image.point_scores is None else image.point_scores[point_keep],
    )


def describe(threshold: ScoreThreshold | None) -> str:
    """A threshold as people read it: ``0.5`` or ``RBC 0.45, WBC 0.6``."""
    if threshold is None:
        return "none"
    if isinstance(threshold, Mapping):
        return ", ".join(f"{name} {value:g}" for name, value in threshold.items())
    return f"{threshold:g}"
