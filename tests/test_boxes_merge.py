"""Merging a box model's tiles: a cell on a tile border counts once, neighbouring cells both stay, and a mosaic
of four real fields with a gutter between them gives the fields' own cells."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cytolens
from blob_detector import BlobDetector, blob_boxes, discs
from conftest import dataset_path
from cytolens.inference.boxes import BoxTiling, detect_boxes, merge_tiles
from cytolens.inference.tiles import Span
from cytolens.io.images import read_image
from cytolens.metrics.box_matching import match_boxes
from cytolens.models.registry import bundled_models

pytestmark = pytest.mark.usefixtures("one_thread")


def _detections(boxes: list[list[float]], scores: list[float]) -> dict[str, np.ndarray]:
    return {
        "boxes": np.array(boxes, dtype=np.float64).reshape(-1, 4),
        "labels": np.zeros(len(scores), dtype=np.int64),
        "scores": np.array(scores, dtype=np.float64),
    }


def test_cells_on_tile_borders_and_corners_are_counted_once():
    tiling = BoxTiling(320, 240, 64)
    windows = tiling.windows(800, 600)
    edges_x = sorted({cols.start for _, cols in windows} | {cols.stop for _, cols in windows} - {0, 800})
    edges_y = sorted({rows.start for rows, _ in windows} | {rows.stop for rows, _ in windows} - {0, 600})
    centres = np.array([[x, y] for x in edges_x for y in edges_y])  # on a vertical and a horizontal tile edge
    centres = np.concatenate([centres, [[x, 300] for x in edges_x], [[400, y] for y in edges_y]])
    image = discs(600, 800, centres, np.full(len(centres), 14.0))
    (found,) = detect_boxes(BlobDetector(), [image], torch.device("cpu"), tiling, 0.5)
    expected = blob_boxes(image[..., 0] < 128)
    assert len(found["boxes"]) == len(expected) == len(np.unique(centres, axis=0))
    np.testing.assert_array_equal(found["boxes"][np.lexsort(found["boxes"].T[::-1])],
                                  expected[np.lexsort(expected.T[::-1])])


def test_two_neighbouring_cells_both_stay_when_one_tile_sees_their_boxes_overlap_more():
    left, right = (Span(0, 100, 0, 100), Span(0, 120, 0, 100)), (Span(0, 100, 0, 100), Span(80, 200, 100, 200))
    # Each tile's own NMS (IoU 0.5) kept both cells: IoU 0.48 on the left, 0.50 on the right. Across the tiles the
    # right tile's first cell overlaps the left tile's second by 0.54: one NMS over both tiles dropped the second
    # cell's better view (0.62) and kept its worse (0.53), under a score threshold of 0.55.
    seen_left = _detections([[90, 40, 100, 50], [93.5, 40, 103.5, 50]], [0.72, 0.62])
    seen_right = _detections([[90.5, 40, 100.5, 50], [93.5, 40.5, 103.5, 50.5]], [0.73, 0.53])
    merged = merge_tiles([seen_left, seen_right], [left, right], 200, 100, iou=0.5)
    np.testing.assert_array_equal(merged["scores"], [0.73, 0.62])
    np.testing.assert_array_equal(merged["boxes"], [[90.5, 40, 100.5, 50], [93.5, 40, 103.5, 50]])


def test_a_large_low_scoring_box_does_not_join_the_pieces_of_a_cell_into_a_larger_one():
    left, right = (Span(0, 100, 0, 100), Span(0, 120, 0, 100)), (Span(0, 100, 0, 100), Span(80, 200, 100, 200))
    seen_left = _detections([[60, 20, 120, 70], [0, 0, 120, 100]], [0.7, 0.06])  # both cut by the edge at x = 120
    seen_right = _detections([[80, 22, 150, 68], [80, 0, 200, 100]], [0.8, 0.05])
    merged = merge_tiles([seen_left, seen_right], [left, right], 200, 100, iou=0.5)
    np.testing.assert_array_equal(merged["boxes"][0], [60, 20, 150, 70])  # the pieces of the cell, joined
    assert merged["scores"].tolist() == [0.8, 0.06]


def _gutter_mosaic(fields: list[np.ndarray], gutter: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    height, width = fields[0].shape[:2]
    background = np.median(np.concatenate([field.reshape(-1, 3) for field in fields]), axis=0).astype(np.uint8)
    mosaic = np.empty((2 * height + gutter, 2 * width + gutter, 3), np.uint8)
    mosaic[:] = background
    corners = [(0, 0), (width + gutter, 0), (0, height + gutter), (width + gutter, height + gutter)]
    for field, (x, y) in zip(fields, corners, strict=True):
        mosaic[y : y + height, x : x + width] = field
    return mosaic, corners


def test_a_mosaic_with_a_gutter_between_four_fields_finds_their_cells_away_from_the_field_edges():
    if "blood-cells" not in bundled_models():
        pytest.skip("bundled model not built yet")
    model = cytolens.load_model("blood-cells", device="cpu")
    fields = [read_image(path) for path in sorted((dataset_path("bccd-txl") / "images" / "test").glob("*.jpg"))[:4]]
    mosaic, corners = _gutter_mosaic(fields, 64)  # 1344 x 1024: 9 tiles, whose edges cross the fields
    (found,) = model.predict([mosaic])
    separate = model.predict(fields, batch_size=4)
    boxes = np.concatenate([
        result.cells.boxes + [x, y, x, y] for result, (x, y) in zip(separate, corners, strict=True)
    ])
    labels = np.concatenate([result.cells.labels for result in separate])

    def inside(boxes: np.ndarray) -> np.ndarray:  # no nearer than 8 pixels to the edge of a field inside the mosaic
        return ~np.any([(boxes[:, low] < edge + 8) & (boxes[:, high] > edge - 8)
                        for low, high, edge in ((0, 2, 640), (0, 2, 704), (1, 3, 480), (1, 3, 544))], axis=0)

    pairs = match_boxes(found.cells.boxes, found.cells.labels, found.cells.scores, boxes, labels)
    assert inside(boxes).sum() > 60
    assert np.isin(np.flatnonzero(inside(boxes)), pairs[:, 1]).all()  # every field's cell there found...
    assert np.isin(np.flatnonzero(inside(found.cells.boxes)), pairs[:, 0]).all()  # ...and nothing else
    assert abs(len(found.cells) - len(boxes)) <= 2  # at the edges, half-cells beside the gutter (see benchmarks)
