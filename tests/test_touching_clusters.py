"""Touching cells grouped into clusters, and the multi-label patches made of them, on synthetic points.

Every expected value is worked out by hand from the coordinates (see the comments).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytolens.data.annotations import AnnotatedImage
from cytolens.data.cells import UNCLASSIFIED, Cells
from cytolens.data.patches import Patch, dataset_patches, image_patches, touching_clusters


def _image(centres: list[tuple[float, float]], labels: list[int], boxes: list | None = None) -> AnnotatedImage:
    cells = Cells(
        labels=np.array(labels),
        centres=np.array(centres, dtype=float),
        boxes=None if boxes is None else np.array(boxes, dtype=float),
    )
    return AnnotatedImage(Path("smear.png"), 640, 480, cells=cells)


def test_chains_of_touching_cells_form_one_cluster_numbered_by_first_cell() -> None:
    centres = [
        (500, 400),  # alone: cluster 0
        (100, 100),  # chain 100 -> 130 -> 160 along x, each 30 apart: cluster 1 (100 and 160 are 60 apart)
        (300, 300),  # pair with (300, 335), 35 apart: cluster 2
        (130, 100),
        (300, 335),
        (160, 100),
        (160, 136.1),  # 36.1 below (160, 100): beyond 36, alone: cluster 3
    ]
    assert touching_clusters(np.array(centres), 36).tolist() == [0, 1, 2, 1, 2, 1, 3]
    assert touching_clusters(np.array(centres), 25).tolist() == [0, 1, 2, 3, 4, 5, 6]  # nothing that close
    assert touching_clusters(np.array(centres), 40).tolist() == [0, 1, 2, 1, 2, 1, 1]  # 36.1 now touches


def test_no_cells_no_clusters() -> None:
    assert touching_clusters(np.zeros((0, 2)), 36).tolist() == []


def test_clusters_become_patches_around_their_extent_labelled_with_their_types() -> None:
    image = _image(
        [(100, 100), (130, 100), (300, 300), (400, 100), (425, 120), (450, 100), (115, 130)],
        [0, 3, 5, 2, 2, 7, UNCLASSIFIED],
    )
    patches = image_patches(4, image, side=64, touching=36)
    assert patches == [
        # (100, 100) and (130, 100), 30 apart, types 0 and 3: squares of 64 from x 68..162, y 68..132, so the
        # extent is 94 x 64 about (115, 100), squared to its longer side. The unlabelled cell at (115, 130),
        # within 36 of both, is left out and joins nothing.
        Patch(4, (115.0, 100.0), 94.0, (0, 3), 2),
        Patch(4, (300.0, 300.0), 64.0, (5,), 1),  # a lone cell: its own square, a single-label patch
        # (400, 100), (425, 120), (450, 100): 32.0 and 32.0 apart, types 2, 2, 7: x 368..482, y 68..152
        Patch(4, (425.0, 110.0), 114.0, (2, 7), 3),
    ]
    assert [patch.cells for patch in image_patches(4, image, side=64)] == [1] * 6  # no touching: one per cell


def test_boxed_cells_cluster_by_their_centres_and_span_their_padded_boxes() -> None:
    # boxes 20 px wide, 10 and 20 high; centres (20, 15) and (50, 20), 30.4 apart; padded by 10%: 22 px squares
    image = _image([(20, 15), (50, 20)], [1, 1], boxes=[[10, 10, 30, 20], [40, 10, 60, 30]])
    (patch,) = image_patches(0, image, pad=0.1, touching=36)
    assert patch.labels == (1,) and patch.cells == 2
    assert patch.centre == pytest.approx((35.0, 17.5))  # x 9..61, y 4..31
    assert patch.side == pytest.approx(52.0)
    assert [p.side for p in image_patches(0, image, pad=0.1, touching=30)] == pytest.approx([22.0, 22.0])


def test_dataset_patches_count_single_and_multi_cell_patches_per_image() -> None:
    images = [
        _image([(100, 100), (120, 100), (500, 400)], [0, 1, 1]),  # a two-type pair and a lone cell
        _image([(50, 50), (60, 60), (70, 70), (300, 300)], [4, 4, 4, 4]),  # a chain of three of one type
    ]
    patches = dataset_patches(images, side=40, touching=30)
    assert [(p.image, p.labels, p.cells) for p in patches] == [
        (0, (0, 1), 2),
        (0, (1,), 1),
        (1, (4,), 3),
        (1, (4,), 1),
    ]
    multi = [p for p in patches if p.cells > 1]
    assert len(multi) == 2 and sum(len(p.labels) > 1 for p in multi) == 1
    assert sum(p.cells for p in patches) == 7  # every labelled cell in exactly one patch
