"""Physical scale: images are brought to the µm/px a model was trained at, and its cells mapped back.

A model sees cells at the size they had in its training images. An image at another magnification is
resized by ``image µm/px / model µm/px`` before the model runs (an image at 0.15 µm/px under a 0.075 µm/px
model is enlarged twice), and the cells found are mapped back to the image's own pixels.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from cytolens.results.result import Result

RESCALE_TOLERANCE = 0.05
"""Relative difference of µm/px below which an image is used as it is."""


def scale_factor(image_mpp: float | None, model_mpp: float | None) -> float:
    """The factor by which to resize an image so that it has the model's µm/px (1 when either is unknown or close)."""
    if not image_mpp or not model_mpp:
        return 1.0
    factor = image_mpp / model_mpp
    return 1.0 if abs(factor - 1.0) <= RESCALE_TOLERANCE else factor


def rescaled(pixels: np.ndarray, factor: float) -> np.ndarray:
    """``pixels`` resized by ``factor`` (area averaging when shrinking, bilinear when enlarging)."""
    if factor == 1.0:
        return pixels
    height, width = pixels.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def mapped_back(result: Result, factor: float, pixels: np.ndarray) -> Result:
    """A result found on an image resized by ``factor``, in the pixels of the original image ``pixels``."""
    if factor == 1.0:
        return result
    cells = result.cells
    boxes = None if cells.boxes is None else cells.boxes / factor
    cells = dataclasses.replace(cells, centres=cells.centres / factor, boxes=boxes)
    height, width = pixels.shape[:2]
    return dataclasses.replace(result, cells=cells, width=width, height=height, pixels=pixels)
