"""Where a slide holds tissue (histology) or a smear (blood), found on a low-resolution picture of it.

Glass is bright and grey; stained tissue and cells are coloured. The saturation of a thumbnail is first averaged
over about :data:`SMOOTH_UM` (the caller's ``smooth``), so that a smear's cells and the pale plasma between them
make one area, and split by Otsu's threshold (:func:`skimage.filters.threshold_otsu`) when the darker class is
glass (its mean below :data:`GLASS_SATURATION`); else (no glass in sight: tissue or smear everywhere, or a blank
slide) by :data:`GLASS_SATURATION` itself. Specks are removed. The tissue's area is measured on this mask;
:func:`grown` widens it by a few pixels, so that cells on its edge lie inside when regions are chosen from it.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.filters import threshold_otsu
from skimage.morphology import remove_small_objects

GLASS_SATURATION = 0.05
"""Saturation (0-1) below which a pixel is glass whatever Otsu's threshold (clean glass measures under 0.03)."""
SMOOTH_UM = 20.0
"""Saturation is averaged over squares of about this many µm (a few red cells) before it is thresholded."""
SPECK_SHARE = 1e-4
"""Connected pieces smaller than this share of the thumbnail are dust, not tissue."""
GROW = 2
"""Pixels (of the thumbnail) by which :func:`grown` widens a mask."""


def tissue_mask(thumbnail: np.ndarray, smooth: int = 2) -> np.ndarray:
    """Which pixels of a slide's thumbnail hold tissue or smear.

    Args:
        thumbnail: ``(H, W, 3)`` uint8 RGB picture of the whole slide.
        smooth: Half-side (pixels of the thumbnail) of the squares the saturation is averaged over.

    Returns:
        ``(H, W)`` bool mask of the tissue itself (its area is the tissue's; see :func:`grown`).

    Examples:
        >>> glass = np.full((64, 64, 3), 240, np.uint8)
        >>> glass[16:48, 16:48] = (200, 80, 160)
        >>> mask = tissue_mask(glass, smooth=0)
        >>> int(mask.sum()), int(grown(mask).sum())
        (1024, 1296)

    """
    saturation = saturation_of(thumbnail)
    if smooth:
        saturation = cv2.blur(saturation, (2 * smooth + 1, 2 * smooth + 1), borderType=cv2.BORDER_REFLECT)
    level = threshold_otsu(saturation) if np.ptp(saturation) > 0 else GLASS_SATURATION
    below = saturation[saturation <= level]
    if not below.size or below.mean() >= GLASS_SATURATION or level < GLASS_SATURATION:
        level = GLASS_SATURATION
    return remove_small_objects(saturation > level, max_size=max(1, int(SPECK_SHARE * saturation.size)))


def saturation_of(pixels: np.ndarray) -> np.ndarray:
    """HSV saturation (0-1, float32) of RGB uint8 pixels: ``(max - min) / max`` per pixel, 0 where black; as
    :func:`skimage.color.rgb2hsv` gives it (it works in float64 too), without its hue and value (3x faster).
    """
    top, bottom = pixels.max(axis=-1).astype(np.float64), pixels.min(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(top > 0, (top - bottom) / top, 0.0).astype(np.float32)


def grown(mask: np.ndarray) -> np.ndarray:
    """``mask`` dilated by :data:`GROW` pixels (a square of side ``2 * GROW + 1``)."""
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * GROW + 1, 2 * GROW + 1), np.uint8)).astype(bool)


__all__ = ["GLASS_SATURATION", "GROW", "SMOOTH_UM", "grown", "saturation_of", "tissue_mask"]
