"""A stand-in box detector for tiling tests: every dark blob of what it is given is a cell, boxed exactly.

Called like a torchvision detector (a list of ``(3, H, W)`` float tensors in [0, 1]), it boxes each connected
region darker than 0.5 in the first channel (:func:`scipy.ndimage.find_objects`), so that a blob cut by a tile
edge is boxed where the tile cuts it, and the cells of a whole image are known exactly (:func:`blob_boxes`).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


def blob_boxes(dark: np.ndarray) -> np.ndarray:
    """``(N, 4)`` xyxy boxes of the connected regions of the boolean image ``dark``."""
    regions, _ = ndimage.label(dark)
    found = ndimage.find_objects(regions)
    return np.array([[cols.start, rows.start, cols.stop, rows.stop] for rows, cols in found], np.float64).reshape(-1, 4)


def discs(height: int, width: int, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """An RGB uint8 image, white but for dark discs at ``centres`` (``(N, 2)`` x, y) of ``radii``."""
    rows, cols = np.mgrid[:height, :width]
    dark = np.zeros((height, width), dtype=bool)
    for (x, y), radius in zip(centres, radii, strict=True):
        low_x, high_x = max(0, int(x - radius)), min(width, int(x + radius) + 2)
        low_y, high_y = max(0, int(y - radius)), min(height, int(y + radius) + 2)
        window = (cols[low_y:high_y, low_x:high_x] - x) ** 2 + (rows[low_y:high_y, low_x:high_x] - y) ** 2
        dark[low_y:high_y, low_x:high_x] |= window <= radius**2
    return np.repeat(np.where(dark, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


class BlobDetector:
    """Boxes every dark blob of each image as a cell of class 1 (0 is torchvision's background), score 0.9,
    keeping at most ``cap`` per image as a detector's ``detections_per_img`` does; ``counts`` records how many each
    call's images gave.
    """

    def __init__(self, cap: int = 1000) -> None:
        self.cap = cap
        self.counts: list[int] = []

    def __call__(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        found = []
        for image in images:
            boxes = torch.from_numpy(blob_boxes(image[0].numpy() < 0.5)).float()[: self.cap]
            self.counts.append(len(boxes))
            found.append({"boxes": boxes, "labels": torch.ones(len(boxes), dtype=torch.int64),
                          "scores": torch.full((len(boxes),), 0.9)})
        return found
