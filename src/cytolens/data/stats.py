"""Counts and size distributions of a dataset, as reported by ``cytolens stats``."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from cytolens.data.annotations import UNCLASSIFIED, Dataset


def spread(values: np.ndarray | list[float]) -> dict[str, float | None]:
    """``min``, ``median`` and ``max`` of ``values`` (all ``None`` when there are none)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"min": None, "median": None, "max": None}
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}


def nearest_neighbour_distances(points: np.ndarray) -> np.ndarray:
    """Distance from each point to its nearest other point (empty for fewer than two points)."""
    if len(points) < 2:
        return np.zeros(0)
    distances, _ = cKDTree(points).query(points, k=2)
    return distances[:, 1]


def _count(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(labels[labels != UNCLASSIFIED], minlength=n_classes)


def dataset_stats(dataset: Dataset) -> dict[str, Any]:
    """Counts and size distributions of ``dataset``, as plain JSON-able values.

    Returns:
        A dict with ``name``; ``images``; ``objects`` (boxes + points), ``boxes``, ``points``,
        ``unclassified_points`` and ``image_labels`` totals; ``per_class`` (class name to count) with
        ``per_class_counts`` saying what it counts: ``"objects"`` (boxes + classified points), or
        ``"image_labels"`` for a dataset without objects (e.g. class-folder crops); ``splits`` (split
        name to the number of its images present); ``image_size`` and, per class, ``box_size``
        (``width`` and ``height``, each a :func:`spread`); ``point_spacing``: the :func:`spread` of the
        distance from each point to its nearest neighbour in the same image, a guide to the
        matching radius of point detection.

    """
    n_classes = len(dataset.classes)
    images = dataset.images
    box_cells = [image.cells.box_cells() for image in images]
    point_cells = [image.cells.point_cells() for image in images]
    box_labels = np.concatenate([cells.labels for cells in box_cells] or [np.zeros(0, np.int64)])
    point_labels = np.concatenate([cells.labels for cells in point_cells] or [np.zeros(0, np.int64)])
    boxes = np.concatenate([cells.boxes for cells in box_cells] or [np.zeros((0, 4))])
    image_labels = np.array([label for image in images for label in image.image_labels], dtype=np.int64)
    objects = len(box_labels) + len(point_labels)
    if objects:
        per_class_of, counts = "objects", _count(box_labels, n_classes) + _count(point_labels, n_classes)
    else:
        per_class_of, counts = "image_labels", _count(image_labels, n_classes)
    present = {image.image_id for image in images}
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    spacing = np.concatenate([nearest_neighbour_distances(cells.centres) for cells in point_cells] or [np.zeros(0)])
    return {
        "name": dataset.name,
        "images": len(images),
        "objects": objects,
        "boxes": len(box_labels),
        "points": len(point_labels),
        "unclassified_points": int((point_labels == UNCLASSIFIED).sum()),
        "image_labels": len(image_labels),
        "per_class_counts": per_class_of,
        "per_class": {name: int(count) for name, count in zip(dataset.classes, counts, strict=True)},
        "splits": {name: sum(key in present for key in ids) for name, ids in dataset.splits.items()},
        "image_size": {
            "width": spread([image.width for image in images]),
            "height": spread([image.height for image in images]),
        },
        "box_size": {
            name: {"width": spread(widths[box_labels == label]), "height": spread(heights[box_labels == label])}
            for label, name in enumerate(dataset.classes)
            if (box_labels == label).any()
        },
        "point_spacing": spread(spacing),
    }
