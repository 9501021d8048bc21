"""Predictions on cells that a partially labelled image leaves unlabelled: neither right nor wrong.

Some datasets label only some of the cells of an image (see :mod:`cytolens.data.partial_labels`). A
prediction on a cell nobody labelled is then no false positive; :func:`drop_unlabelled_detections` leaves
such predictions out before they are scored (``evaluate --ignore-unlabelled``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial import cKDTree

from cytolens.data.annotations import Dataset
from cytolens.data.partial_labels import stained_mask
from cytolens.io.images import read_image


def drop_unlabelled_detections(predictions: Dataset, truth: Dataset, radius: float) -> tuple[Dataset, int]:
    """Drop predicted centres on unlabelled cells: in a partially labelled image they are neither right nor wrong.

    A predicted centre is kept when it lies on unstained background (a false positive) or within
    ``2 · radius`` of a true centre (matched, or a second detection on a labelled cell); the others lie
    on cells nobody labelled. Images pair by ``image_id``; predicted boxes are all kept.

    Args:
        predictions: Predicted points.
        truth: The partially labelled ground truth (its images are read to find the stained cells).
        radius: Matching radius (pixels).

    Returns:
        The kept predictions, and how many centres were dropped.

    """
    truths = {image.image_id: image for image in truth.images}
    images, dropped = [], 0
    for image in predictions.images:
        true, cells = truths.get(image.image_id), image.cells
        boxed = cells.has_box
        if true is None or boxed.all():
            images.append(image)
            continue
        stained = stained_mask(read_image(true.path))
        height, width = stained.shape
        cols = np.clip(cells.centres[:, 0].astype(int), 0, width - 1)
        rows = np.clip(cells.centres[:, 1].astype(int), 0, height - 1)
        true_centres = true.cells.point_cells().centres
        far = cKDTree(true_centres).query(cells.centres)[0] if len(true_centres) else np.full(len(cells), np.inf)
        keep = boxed | ~stained[rows, cols] | (far <= 2 * radius)
        dropped += int((~keep).sum())
        images.append(dataclasses.replace(image, cells=cells.select(keep)))
    return dataclasses.replace(predictions, images=images), dropped
