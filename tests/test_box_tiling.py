"""Box models on images larger than one tile: tiles from the model card, merged without double counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

import cytolens
from conftest import dataset_path
from cytolens.errors import CytolensError, DataError
from cytolens.examples import path as examples_path
from cytolens.inference.boxes import BoxTiling, check_fit, detect_boxes, merge_tiles
from cytolens.inference.model import CellModel
from cytolens.inference.tiles import Span
from cytolens.io.images import read_image
from cytolens.models.card import InputConfig
from cytolens.models.registry import bundled_models
from tiny_detector import KWARGS, tiny_detector

pytestmark = pytest.mark.usefixtures("one_thread")


# --- tiles ------------------------------------------------------------------------------------------------


def test_tiles_come_from_the_card_and_default_to_the_training_fields():
    network = torch.nn.Module()
    assert BoxTiling.of(network, InputConfig(size=(640, 480))) == BoxTiling(640, 480, 128)  # the input size
    assert BoxTiling.of(network, InputConfig(size=(512, 384), overlap=64)) == BoxTiling(512, 384, 64)
    assert BoxTiling.of(network, InputConfig(size=(640, 480), tile_size=800, overlap=100)) == BoxTiling(800, 600, 100)
    assert BoxTiling.of(network, InputConfig()) is None  # nothing known: every image runs whole
    tiling = BoxTiling(640, 480, 128)
    assert tiling.fits(640, 480) and tiling.fits(480, 640) and not tiling.fits(640, 481)
    assert tiling.windows(600, 400) == [(Span(0, 400, 0, 400), Span(0, 600, 0, 600))]
    windows = tiling.windows(1280, 960)
    assert {(rows.stop - rows.start, cols.stop - cols.start) for rows, cols in windows} == {(480, 640)}
    assert len(windows) == 9
    portrait = tiling.windows(960, 1280)
    assert {(rows.stop - rows.start, cols.stop - cols.start) for rows, cols in portrait} == {(640, 480)}


def test_an_overlap_that_does_not_fit_the_tiles_is_one_line():
    with pytest.raises(CytolensError, match="tile overlap 480 must be at least 0 and smaller than the tiles"):
        BoxTiling(640, 480, 480)


def test_tiles_of_a_large_image_are_checked_instead_of_the_image(tmp_path: Path):
    network = cytolens.load_model(tiny_detector(tmp_path / "tiny.pt"), device="cpu").network  # input 256 x 192
    check_fit(network, "mosaic.png", 1100, 800, BoxTiling(320, 240, 64))  # tiles shrunk 1.25 times
    with pytest.raises(DataError, match="^mosaic.png: 1100x800 image would be shrunk 4 times .* crop or tile it$"):
        check_fit(network, "mosaic.png", 1100, 800)
    with pytest.raises(DataError, match="2000x1500 image's 1100x825 tiles would be shrunk 4 times .* smaller tiles$"):
        check_fit(network, "mosaic.png", 2000, 1500, BoxTiling(1100, 825, 64))
    with pytest.raises(DataError, match="1x2000 image is too thin for the model: its 1x320 tiles would be 0x256 pix"):
        check_fit(network, "strip.png", 1, 2000, BoxTiling(320, 240, 64))


# --- merging ----------------------------------------------------------------------------------------------


def _detections(boxes: list[list[float]], labels: list[int], scores: list[float]) -> dict[str, np.ndarray]:
    return {
        "boxes": np.array(boxes, dtype=np.float64).reshape(-1, 4),
        "labels": np.array(labels, dtype=np.int64),
        "scores": np.array(scores, dtype=np.float64),
    }


LEFT = (Span(0, 100, 0, 100), Span(0, 120, 0, 100))  # two tiles side by side over a 200 x 100 image, 40 apart
RIGHT = (Span(0, 100, 0, 100), Span(80, 200, 100, 200))


def test_a_cell_cut_by_a_tile_edge_gives_way_to_the_tile_holding_it_whole():
    left = _detections([[100, 10, 120, 30], [10, 10, 30, 30]], [1, 1], [0.6, 0.9])  # the first is cut at x = 120
    right = _detections([[100, 10, 130, 30]], [1], [0.5])
    merged = merge_tiles([left, right], [LEFT, RIGHT], 200, 100, iou=0.6)
    np.testing.assert_array_equal(merged["boxes"], [[10, 10, 30, 30], [100, 10, 130, 30]])
    np.testing.assert_array_equal(merged["scores"], [0.9, 0.5])


def test_the_pieces_of_a_cell_larger_than_the_overlap_become_one_box():
    left = _detections([[60, 20, 120, 70]], [0], [0.7])  # a 90-pixel cell from x = 60 to 150, cut by both tiles
    right = _detections([[80, 22, 150, 68]], [0], [0.8])
    merged = merge_tiles([left, right], [LEFT, RIGHT], 200, 100, iou=0.6)
    np.testing.assert_array_equal(merged["boxes"], [[60, 20, 150, 70]])
    assert merged["scores"].tolist() == [0.8] and merged["labels"].tolist() == [0]


def test_a_cell_found_whole_in_two_tiles_counts_once_and_distinct_cells_stay():
    left = _detections([[85, 40, 105, 60], [85, 40, 105, 60], [60, 70, 84, 95]], [1, 2, 1], [0.9, 0.4, 0.8])
    right = _detections([[86, 41, 105, 61], [85, 62, 100, 80]], [1, 1], [0.7, 0.6])
    merged = merge_tiles([left, right], [LEFT, RIGHT], 200, 100, iou=0.6)
    assert sorted(merged["scores"].tolist()) == [0.4, 0.6, 0.8, 0.9]  # the RBC seen twice (0.7) is dropped
    assert merged["labels"][merged["scores"] == 0.4].tolist() == [2]  # another class at the same place stays


class GridDetector:
    """Stand-in detector that "finds" known cells in whatever tile it is given, clipped to the tile as a
    torchvision detector clips its boxes. Pixels encode their own position, so that the tile's place is known."""

    def __init__(self, cells: np.ndarray) -> None:
        self.cells = cells
        self.calls: list[int] = []

    def __call__(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        self.calls.append(len(images))
        found = []
        for image in images:
            low, high, mixed = (round(float(value) * 255) for value in image[:, 0, 0])
            x0, y0 = low + 256 * (mixed % 16), high + 256 * (mixed // 16)
            height, width = image.shape[1:]
            boxes = self.cells - [x0, y0, x0, y0]
            inside = (boxes[:, 2] > 0) & (boxes[:, 3] > 0) & (boxes[:, 0] < width) & (boxes[:, 1] < height)
            boxes = np.clip(boxes[inside], 0, [width, height, width, height])
            found.append({
                "boxes": torch.from_numpy(boxes).float(),
                "labels": torch.full((len(boxes),), 2),
                "scores": torch.linspace(0.9, 0.5, len(boxes)),
            })
        return found


def _positions(height: int, width: int) -> np.ndarray:
    rows, cols = np.mgrid[:height, :width]
    return np.stack([cols % 256, rows % 256, cols // 256 + 16 * (rows // 256)], axis=-1).astype(np.uint8)


def test_every_cell_of_a_large_image_is_found_once_whatever_the_tile_borders():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, [560, 900], (120, 2))  # cells up to the overlap (64 pixels), many touching
    small = np.concatenate([corners, corners + rng.uniform(20, 60, (120, 1))], axis=1)
    large = [[680, 180, 820, 300], [900, 430, 1040, 560], [1100, 700, 1240, 850]]  # across tile borders
    cells = np.concatenate([small, large])
    detector, tiling = GridDetector(cells), BoxTiling(320, 240, 64)
    (found,) = detect_boxes(detector, [_positions(960, 1280)], torch.device("cpu"), tiling, 0.9, per_pass=4)
    assert sum(detector.calls) == len(tiling.windows(1280, 960)) == 30 and max(detector.calls) == 4
    order = np.lexsort(found["boxes"].T[::-1])
    np.testing.assert_allclose(found["boxes"][order], cells[np.lexsort(cells.T[::-1])], atol=1e-3)
    assert (found["labels"] == 1).all()


def test_the_detection_cap_applies_per_tile_not_per_image(tmp_path: Path):
    image = read_image(sorted((examples_path() / "JPEGImages").glob("*.jpg"))[0])[:240, :320]
    mosaic = np.concatenate([np.concatenate([image, image], 1)] * 2, 0)  # 640 x 480: the input is 256 x 192
    capped = cytolens.load_model(tiny_detector(tmp_path / "capped.pt", kwargs={**KWARGS, "detections_per_img": 5}))
    (whole,) = capped.predict([mosaic], score_threshold=0.0)
    (tiled,) = capped.predict([mosaic], score_threshold=0.0, tile_size=320)
    assert len(whole.cells) == 5 and len(tiled.cells) > 5


# --- the bundled model on a mosaic of four BCCD fields -------------------------------------------------------


@pytest.fixture(scope="module")
def fields() -> list[np.ndarray]:
    """The first four BCCD test fields re-annotated by TXL-PBC (640 x 480 each)."""
    return [read_image(path) for path in sorted((dataset_path("bccd-txl") / "images" / "test").glob("*.jpg"))[:4]]


@pytest.fixture(scope="module")
def blood_cells() -> CellModel:
    if "blood-cells" not in bundled_models():
        pytest.skip("bundled model not built yet")
    return cytolens.load_model("blood-cells", device="cpu")


def _mosaic(fields: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.concatenate(fields[:2], axis=1), np.concatenate(fields[2:], axis=1)], axis=0)


def _counts(results: list) -> dict[str, int]:
    return {name: sum(result.counts()[name] for result in results) for name in results[0].classes}


OFFSETS = [(0, 0), (640, 0), (0, 480), (640, 480)]
"""Where each field lies in the mosaic."""


def _at_a_seam(boxes: np.ndarray, margin: float = 4.0) -> np.ndarray:
    """Which mosaic boxes reach one of the lines where two fields meet (x = 640, y = 480)."""
    return ((boxes[:, 0] < 640 + margin) & (boxes[:, 2] > 640 - margin)) | (
        (boxes[:, 1] < 480 + margin) & (boxes[:, 3] > 480 - margin)
    )


def _matches(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """For each box of ``first``, the box of ``second`` it overlaps most if their IoU is at least 0.5, else -1."""
    if not len(second):
        return np.full(len(first), -1)
    iou = box_iou(torch.from_numpy(first), torch.from_numpy(second)).numpy()
    return np.where(iou.max(axis=1) >= 0.5, iou.argmax(axis=1), -1)


def test_a_mosaic_of_four_fields_counts_what_the_four_fields_count(fields, blood_cells):
    separate = blood_cells.predict(fields, batch_size=4)
    (tiled,) = blood_cells.predict([_mosaic(fields)])  # 9 tiles of 640 x 480, overlapping by 128
    expected, found = _counts(separate), tiled.counts()
    assert found["WBC"] == expected["WBC"] and found["Platelets"] == expected["Platelets"]
    for index, name in enumerate(tiled.classes):  # away from the seams: the same cells, none twice
        fields_boxes = np.concatenate([
            result.cells.boxes[result.cells.labels == index] + [x, y, x, y]
            for result, (x, y) in zip(separate, OFFSETS, strict=True)
        ])
        mosaic_boxes = tiled.cells.boxes[tiled.cells.labels == index]
        assert (_matches(fields_boxes[~_at_a_seam(fields_boxes)], mosaic_boxes) >= 0).all(), name
        matched = _matches(mosaic_boxes[~_at_a_seam(mosaic_boxes)], fields_boxes)
        assert (matched >= 0).all() and len(set(matched)) == len(matched), name
    shrunk = blood_cells.predict([_mosaic(fields)], tile_size=1280)[0].counts()  # one pass, as before tiling
    assert shrunk["WBC"] < expected["WBC"]


def test_tiles_on_the_field_borders_give_exactly_the_fields_cells(fields, blood_cells):
    separate = blood_cells.predict(fields, batch_size=4)
    (tiled,) = blood_cells.predict([_mosaic(fields)], tile_size=640, overlap=0, batch_size=4)
    boxes = np.concatenate([found.cells.boxes + [x, y, x, y] for found, (x, y) in zip(separate, OFFSETS, strict=True)])
    labels = np.concatenate([result.cells.labels for result in separate])
    assert len(tiled.cells) == len(boxes)
    order, expected = np.lexsort(tiled.cells.boxes.T[::-1]), np.lexsort(boxes.T[::-1])
    np.testing.assert_allclose(tiled.cells.boxes[order], boxes[expected], atol=1e-4)
    np.testing.assert_array_equal(tiled.cells.labels[order], labels[expected])


def test_an_image_no_larger_than_one_tile_runs_whole_as_before(fields, blood_cells):
    (result,) = blood_cells.predict([fields[0]], score_threshold=0.0)
    with torch.inference_mode():
        tensor = torch.from_numpy(fields[0]).permute(2, 0, 1).float().div(255)
        out = blood_cells.detector([tensor])[0] if blood_cells.detector else blood_cells.network([tensor])[0]
    keep = out["labels"] > 0
    np.testing.assert_array_equal(result.cells.boxes, out["boxes"][keep].numpy().astype(np.float64))
    np.testing.assert_array_equal(result.cells.scores, out["scores"][keep].numpy().astype(np.float64))
