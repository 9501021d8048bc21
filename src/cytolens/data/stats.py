"""Counts and size distributions of a dataset, and checks of its crops, as reported by ``cytolens stats``.

:func:`dataset_stats` counts from the annotations alone. :func:`crop_checks` looks at the pixels of a
dataset of crops (class folders: one labelled cell per image) for two faults that labels hide:

- **blank crops**: near-uniform background, whose grey level (ITU-R 601 luma, as OpenCV's and Pillow's
  grey conversions, rounded to 8 bits) varies by a standard deviation below :data:`BLANK_STD`;
- **exact duplicates**: crops with the same decoded pixels (same size and values), found by a SHA-256
  of them, whatever their file names or formats.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import cv2
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


BLANK_STD = 8.0
"""Grey-level standard deviation below which a crop counts as blank: the 349 near-uniform crops of CRIC
(of 2,121) lie below it, its cells' crops above."""


def grey_std(pixels: np.ndarray) -> float:
    """Standard deviation of the grey level (0-255, ITU-R 601 luma rounded to 8 bits) of ``(H, W, 3)`` RGB pixels."""
    return float(cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY).std())


def pixel_digest(pixels: np.ndarray) -> str:
    """SHA-256 (hex) of the pixels' shape and values: equal for exactly the same decoded picture."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    return hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()


def crop_checks(dataset: Dataset, pixels: Iterable[np.ndarray], blank_std: float = BLANK_STD) -> dict[str, Any]:
    """Blank crops and exact duplicates among the images of ``dataset`` (see the module docstring).

    Args:
        dataset: Crops with image labels (a class-folder dataset).
        pixels: Each image's ``(H, W, 3)`` uint8 RGB pixels, in the order of ``dataset.images``.
        blank_std: A crop whose grey-level standard deviation is below this is blank.

    Returns:
        ``blank_std``; ``blank``: one entry per blank crop (``image`` id, ``file``, ``class``, its
        ``grey_std``), in dataset order; ``duplicates``: groups of two or more crops with the same pixels,
        each a list of entries (``image``, ``file``, ``class``), in the order of their first crop;
        ``per_class``: per class name, its ``crops``, how many are ``blank``, and how many are in a
        duplicate group (``duplicates``). A crop's class is its image labels' names joined by ``+``.

    """
    per_class = {name: {"crops": 0, "blank": 0, "duplicates": 0} for name in dataset.classes}
    blank, groups = [], defaultdict(list)
    for image, picture in zip(dataset.images, pixels, strict=True):
        names = [dataset.classes[label] for label in image.image_labels]
        entry = {"image": image.image_id, "file": str(image.path), "class": "+".join(names)}
        spread = grey_std(picture)
        if spread < blank_std:
            blank.append(entry | {"grey_std": spread})
        groups[pixel_digest(picture)].append((entry, names))
        for name in names:
            per_class[name]["crops"] += 1
            per_class[name]["blank"] += spread < blank_std
    duplicates = [group for group in groups.values() if len(group) > 1]
    for group in duplicates:
        for _, names in group:
            for name in names:
                per_class[name]["duplicates"] += 1
    return {
        "blank_std": blank_std,
        "blank": blank,
        "duplicates": [[entry for entry, _ in group] for group in duplicates],
        "per_class": per_class,
    }
