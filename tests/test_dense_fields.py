"""Dense fields: thousands of cells in one image through a box model's tiles, none lost to a cap, none twice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blob_detector import BlobDetector, blob_boxes, discs
from cytolens.inference.boxes import BoxTiling, detect_boxes

pytestmark = pytest.mark.usefixtures("one_thread")


def _sorted(boxes: np.ndarray) -> np.ndarray:
    return boxes[np.lexsort(boxes.T[::-1])]


def test_thousands_of_cells_in_one_image_are_each_found_once_and_no_cap_truncates():
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[20:1500:40, 20:2000:40]  # 1,850 cells 40 pixels apart: many on a tile edge or corner
    centres = np.stack([cols.ravel(), rows.ravel()], axis=1) + rng.uniform(-4, 4, (rows.size, 2))
    radii = rng.uniform(8, 14, rows.size)
    large = [[700, 400], [1300, 1000]]  # two cells larger than the overlap, over tile borders
    image = discs(1500, 2000, np.concatenate([centres, large]), np.concatenate([radii, [45, 45]]))
    expected = blob_boxes(image[..., 0] < 128)
    detector, tiling = BlobDetector(cap=60), BoxTiling(320, 240, 64)
    (found,) = detect_boxes(detector, [image], torch.device("cpu"), tiling, 0.5, per_pass=8)
    assert len(tiling.windows(2000, 1500)) == len(detector.counts) == 72
    assert max(detector.counts) < detector.cap  # no tile pinned at its cap...
    assert len(found["boxes"]) == len(expected) > 1000  # ...and the image has none
    np.testing.assert_array_equal(_sorted(found["boxes"]), _sorted(expected))

