"""Reshaping annotations between kinds: boxes to points (cell centres)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.errors import CytolensError


def _as_points(image: AnnotatedImage, chosen: AnnotatedImage) -> AnnotatedImage:
    """``chosen`` (``image`` relabelled into the chosen classes) with its points, then its box centres, as points.

    Cells of classes not chosen are left out; cells that were unclassified already stay. Among scored cells,
    a cell without a score gets 1.
    """
    cells, boxed = chosen.cells, chosen.cells.has_box
    keep = (cells.labels != UNCLASSIFIED) | (image.cells.labels == UNCLASSIFIED)
    points = cells.select(np.concatenate([np.flatnonzero(keep & ~boxed), np.flatnonzero(keep & boxed)]))
    scores = None if points.scores is None else np.where(np.isnan(points.scores), 1.0, points.scores)
    return dataclasses.replace(chosen, cells=dataclasses.replace(points, boxes=None, scores=scores))


def boxes_to_points(dataset: Dataset, classes: Sequence[str] | None = None) -> Dataset:
    """A point dataset of the box centres of ``dataset``.

    Each box becomes a point at its centre with the box's class (and score, for predictions); points
    the images already hold stay, before them. When the images hold scores, cells without one get 1.

    Args:
        dataset: Images with boxes.
        classes: Keep only the cells of these classes, which become the class list in this order
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
    chosen = dataset.relabel(names)
    images = [_as_points(image, relabelled) for image, relabelled in zip(dataset.images, chosen.images, strict=True)]
    return dataclasses.replace(chosen, images=images)
