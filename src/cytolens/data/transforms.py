"""Reshaping annotations between kinds: boxes to points (cell centres)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.errors import CytolensError


def _scores(scores: np.ndarray | None, count: int) -> np.ndarray:
    return np.ones(count) if scores is None else scores


def _centred(image: AnnotatedImage, index: np.ndarray, kept: list[int]) -> AnnotatedImage:
    """``image`` with its boxes turned into centre points and labels mapped through ``index``."""
    box_labels = index[image.box_labels]
    point_labels = np.where(image.point_labels == UNCLASSIFIED, UNCLASSIFIED, index[np.maximum(image.point_labels, 0)])
    keep_boxes = box_labels != UNCLASSIFIED
    keep_points = (point_labels != UNCLASSIFIED) | (image.point_labels == UNCLASSIFIED)
    scores = None
    if image.has_scores:
        scores = np.concatenate(
            [
                _scores(image.point_scores, len(image.points))[keep_points],
                _scores(image.box_scores, len(image.boxes))[keep_boxes],
            ]
        )
    return dataclasses.replace(
        image,
        boxes=np.zeros((0, 4)),
        box_labels=np.zeros(0, dtype=np.int64),
        box_scores=None,
        points=np.concatenate([image.points[keep_points], image.box_centres()[keep_boxes]]),
        point_labels=np.concatenate([point_labels[keep_points], box_labels[keep_boxes]]),
        point_scores=scores,
        image_labels=[int(index[label]) for label in image.image_labels if index[label] != UNCLASSIFIED],
        image_scores=None if image.image_scores is None else np.asarray(image.image_scores)[kept],
    )


def boxes_to_points(dataset: Dataset, classes: Sequence[str] | None = None) -> Dataset:
    """A point dataset of the box centres of ``dataset``.

    Each box becomes a point at its centre with the box's class (and score, for predictions); points
    the images already hold stay. When the images hold scores, objects without one get 1.

    Args:
        dataset: Images with boxes.
        classes: Keep only the objects of these classes, which become the class list in this order
            (e.g. ``["RBC"]`` for red cells only); unclassified points stay. ``None`` keeps every class.

    Returns:
        A new dataset (same image order, splits, name and licence) with points instead of boxes.

    Raises:
        CytolensError: If a name in ``classes`` is not a class of ``dataset``.

    """
    names = list(dataset.classes) if classes is None else list(classes)
    unknown = [name for name in names if name not in dataset.classes]
    if unknown:
        raise CytolensError(f"{dataset.name}: no class {unknown[0]!r} (classes: {', '.join(dataset.classes)})")
    index = np.array([names.index(name) if name in names else UNCLASSIFIED for name in dataset.classes], dtype=np.int64)
    kept = [dataset.classes.index(name) for name in names]
    images = [_centred(image, index, kept) for image in dataset.images]
    return Dataset(names, images, dict(dataset.splits), dataset.name, dataset.licence)
