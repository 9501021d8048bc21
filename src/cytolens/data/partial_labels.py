"""Where the stained cells are, and which pixels a partially labelled image says nothing about.

Some datasets label only some of the cells in an image (Chula RBC-12 marks every cell in some fields
and only a few unusual ones in others). Training a proximity map on such an image as if every
unlabelled pixel were background teaches the model that cells are background. Instead, pixels of
*unlabelled cells* are left out of the proximity loss: a pixel is *known* when it is background
(not stained) or within :data:`REACH` ``· d`` of a labelled centre (the whole of a labelled cell, whose
rim lies beyond ``d``; a neighbouring cell's centre region is farther, since ``d`` is about a third of
the spacing of neighbouring centres). Stained pixels are found by Otsu's threshold on
the CIELAB ``a*`` (red-green) channel, where eosin- and Romanowsky-stained cells stand out from the
pale background, then closed, cleared of small holes (the central pallor of red cells) and slightly
dilated so that cell rims count as cells. When such images are scored, predictions on their unlabelled
cells are left out (:func:`cytolens.metrics.unlabelled.drop_unlabelled_detections`).
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.filters import threshold_otsu
from skimage.morphology import remove_small_holes

REACH = 1.5
"""Pixels within ``REACH · d`` of a labelled centre are known (target 0 beyond ``d``)."""
GROW = 3
"""Pixels by which the stained mask is dilated (cell rims are paler than the cell body)."""


def stained_mask(pixels: np.ndarray, max_hole: int = 1000) -> np.ndarray:
    """Pixels of stained objects (cells) in an RGB image.

    Args:
        pixels: ``(H, W, 3)`` uint8 RGB image.
        max_hole: Unstained holes up to this area (pixels) are filled: about a red cell's area at
            1000x (0.1 µm per pixel), so that pallor is filled but background ringed by cells is not.

    Returns:
        ``(H, W)`` bool mask, True on stained objects. All False for a uniform image.

    """
    redness = cv2.GaussianBlur(cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB)[..., 1], (5, 5), 0)
    if redness.min() == redness.max():
        return np.zeros(redness.shape, dtype=bool)
    mask = (redness > threshold_otsu(redness)).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8)).astype(bool)
    mask = remove_small_holes(mask, max_size=max_hole).astype(np.uint8)
    return cv2.dilate(mask, np.ones((2 * GROW + 1, 2 * GROW + 1), np.uint8)).astype(bool)


def known_pixels(stained: np.ndarray, distance: np.ndarray, reach: float) -> np.ndarray:
    """Pixels whose proximity target is known in a partially labelled image.

    Args:
        stained: ``(H, W)`` mask of stained objects (:func:`stained_mask`).
        distance: ``(H, W)`` distance from each pixel to the nearest labelled centre.
        reach: Pixels this close to a labelled centre are known (training uses ``REACH · d``).

    Returns:
        ``(H, W)`` float32 map, 1 where known (background or near a labelled centre), 0 on unlabelled cells.

    """
    return (~stained | (distance <= reach)).astype(np.float32)
