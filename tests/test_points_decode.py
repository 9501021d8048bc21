"""Peak decoding and tiled prediction of point models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cytolens.errors import CytolensError
from cytolens.inference.peaks import find_peaks, peak_candidates, point_maps, predict_points
from cytolens.inference.tiles import spans
from cytolens.models.card import PointThresholds
from cytolens.training.proximity import proximity_map


def sorted_xy(points: np.ndarray) -> np.ndarray:
    return points[np.lexsort((points[:, 0], points[:, 1]))]


def test_find_peaks_recovers_centres_exactly():
    centres = np.array([[10.5, 12.5], [30.5, 12.5], [20.5, 40.5], [0.5, 47.5], [59.5, 0.5]])
    prox = proximity_map(centres, (48, 60), d=6.0)
    found = find_peaks(prox, threshold_rel=0.4, min_distance=3)
    np.testing.assert_array_equal(sorted_xy(found), sorted_xy(centres))


def test_find_peaks_thresholds_relative_to_the_maximum():
    prox = np.zeros((20, 20), dtype=np.float32)
    prox[5, 5], prox[15, 15], prox[5, 15] = 1.0, 0.5, 0.2
    assert len(find_peaks(prox, threshold_rel=0.3, min_distance=2)) == 2
    assert len(find_peaks(prox, threshold_rel=0.1, min_distance=2)) == 3
    assert len(find_peaks(prox, threshold_rel=0.1, min_distance=2, threshold_abs=0.3)) == 2


def test_higher_threshold_is_a_filter_of_lower_candidates():
    rng = np.random.default_rng(1)
    prox = proximity_map(rng.uniform(0, 64, (40, 2)), (64, 64), d=7.0) * rng.uniform(0.3, 1, (64, 64))
    candidates = peak_candidates(prox, 3, 0.05)
    values = prox[candidates[:, 0], candidates[:, 1]]
    for xi in (0.2, 0.5, 0.7):
        direct = find_peaks(prox, xi, 3, threshold_abs=0.05)
        filtered = candidates[values > max(0.05, xi * prox.max())][:, ::-1] + 0.5
        np.testing.assert_array_equal(sorted_xy(direct), sorted_xy(filtered))


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "multiple"),
    [(200, 64, 16, 1), (200, 64, 16, 32), (64, 64, 16, 1), (30, 64, 16, 32), (513, 512, 64, 1), (4096, 768, 64, 32)],
)
def test_tile_cores_partition_the_axis(length, tile, overlap, multiple):
    parts = spans(length, tile, overlap, multiple)
    assert parts[0].core_start == 0 and parts[-1].core_stop == length
    assert len(parts) == max(1, -(-(length - overlap) // (tile - overlap)))  # as few tiles as the size allows
    for before, after in zip(parts, parts[1:], strict=False):
        assert before.core_stop == after.core_start
        assert after.start <= before.stop - overlap
    for part in parts:
        assert part.stop - part.start <= tile and part.start >= 0 and part.stop <= length
        assert len(parts) == 1 or (part.stop - part.start) % multiple == 0
        if part.start > 0:
            assert part.core_start - part.start >= overlap // 2
        if part.stop < length:
            assert part.stop - part.core_stop >= overlap // 2


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(1280, 640, 128), (960, 480, 128), (700, 640, 128), (641, 640, 0)]
)
def test_full_tiles_keep_their_size_and_overlap_at_least_as_asked(length, tile, overlap):
    parts = spans(length, tile, overlap, shrink=False)
    assert parts[0].start == 0 and parts[-1].stop == length and len(parts) == -(-(length - overlap) // (tile - overlap))
    assert all(part.stop - part.start == tile for part in parts)
    assert all(after.start <= before.stop - overlap for before, after in zip(parts, parts[1:], strict=False))
    assert spans(300, tile, overlap, shrink=False) == spans(300, tile, overlap)  # a short axis is one tile


class EchoModel(nn.Module):
    """A stand-in point model: proximity is the red channel, class logits the green and blue channels."""

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"proximity": images[:, :1], "logits": images[:, 1:] * 10}


def test_tiled_prediction_finds_border_cells_once():
    first, second, third = (part.core_start for part in spans(200, 64, 16, multiple=32)[1:])  # 4 x 4 tiles
    centres = np.array(
        [[first + 0.5, 20.5], [first - 0.5, 80.5], [second + 0.5, second + 0.5], [first + 0.5, first + 0.5],
         [third - 0.5, 150.5], [10.5, 190.5]]
    )
    prox = proximity_map(centres, (200, 200), d=6.0)
    image = np.zeros((200, 200, 3), dtype=np.uint8)
    image[..., 0] = np.round(prox * 255)
    image[..., 1] = 255 * (image[..., 0] > 0) * (np.arange(200)[None, :] < 100)  # class 0 on the left half
    image[..., 2] = 255 * (image[..., 0] > 0) * (np.arange(200)[None, :] >= 100)  # class 1 on the right half
    thresholds = PointThresholds(threshold_rel=0.5, min_distance=3, threshold_abs=0.1)
    (tiled,) = predict_points(EchoModel(), [image], ["left", "right"], thresholds, tile_size=64, overlap=16)
    (whole,) = predict_points(EchoModel(), [image], ["left", "right"], thresholds, tile_size=256, overlap=16)
    assert len(tiled.cells) == len(whole.cells) == len(centres)
    np.testing.assert_array_equal(sorted_xy(tiled.cells.centres), sorted_xy(centres))
    np.testing.assert_array_equal(sorted_xy(tiled.cells.centres), sorted_xy(whole.cells.centres))
    np.testing.assert_array_equal(tiled.cells.labels, (tiled.cells.centres[:, 0] >= 100).astype(int))
    np.testing.assert_allclose(tiled.cells.scores, 1.0)
    np.testing.assert_allclose(tiled.cells.probabilities.sum(axis=1), 1.0)
    assert tiled.classes == ["left", "right"] and (tiled.width, tiled.height) == (200, 200)


def test_tiled_prediction_of_an_empty_image_and_bad_overlap():
    thresholds = PointThresholds(threshold_rel=0.5, min_distance=3)
    (empty,) = predict_points(
        EchoModel(), [np.zeros((100, 90, 3), dtype=np.uint8)], ["a", "b"], thresholds, tile_size=64, overlap=16
    )
    assert len(empty.cells) == 0 and empty.cells.probabilities.shape == (0, 2)
    with pytest.raises(CytolensError, match="min_distance"):
        predict_points(EchoModel(), [np.zeros((10, 10, 3), dtype=np.uint8)], ["a", "b"], thresholds, overlap=4)
    with pytest.raises(CytolensError, match="smaller than the tile size 64"):
        predict_points(EchoModel(), [np.zeros((10, 10, 3), dtype=np.uint8)], ["a", "b"], thresholds, tile_size=64,
                       overlap=64)


def test_tune_threshold_rel_drops_a_low_false_peak():
    from cytolens.data.annotations import AnnotatedImage, Dataset
    from cytolens.data.cells import Cells
    from cytolens.inference.peaks import tune_threshold_rel

    true = AnnotatedImage("a.png", 50, 50, "a", cells=Cells(centres=[[10.5, 10.5], [30.5, 30.5]], labels=[0, 0]))
    found = AnnotatedImage("a.png", 50, 50, "a", cells=Cells(
        centres=[[10.5, 10.5], [30.5, 30.5], [40.5, 5.5]], labels=[0, 0, 0], scores=[1.0, 0.8, 0.3]))
    xi, figures = tune_threshold_rel([(found, 1.0)], Dataset(["cell"], [true]), radius=3.0)
    assert figures["f1"] == 1.0
    assert xi == 0.7  # every ξ from 0.3 to 0.7 keeps exactly the two true peaks: the highest wins the tie


def _echo_images() -> list[np.ndarray]:
    """Three images of two sizes (the large one in tiles) with proximity blobs in red and classes in green/blue."""
    rng = np.random.default_rng(3)
    images = []
    for height, width in ((200, 170), (64, 64), (200, 170)):
        prox = proximity_map(rng.uniform(0, min(height, width), (12, 2)), (height, width), d=6.0)
        image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        image[..., 0] = np.round(prox * 255)
        images.append(image)
    return images


def test_tiles_of_several_images_batched_together_give_the_same_cells():
    images, thresholds = _echo_images(), PointThresholds(threshold_rel=0.3, min_distance=3)
    one = predict_points(EchoModel(), images, ["a", "b"], thresholds, tile_size=64, overlap=16, per_pass=1)
    many = predict_points(EchoModel(), images, ["a", "b"], thresholds, tile_size=64, overlap=16, per_pass=5)
    assert [len(result.cells) for result in one] == [len(result.cells) for result in many]
    assert all(len(result.cells) > 0 for result in one)
    for first, second in zip(one, many, strict=True):
        np.testing.assert_array_equal(first.cells.centres, second.cells.centres)
        np.testing.assert_array_equal(first.cells.labels, second.cells.labels)
        np.testing.assert_array_equal(first.cells.probabilities, second.cells.probabilities)
        assert first.pixels is not None and (first.height, first.width) == first.pixels.shape[:2]


def test_point_maps_stitch_the_tiles_into_the_whole_images_maps():
    images = _echo_images()
    maps = point_maps(EchoModel(), images, tile_size=64, overlap=16, per_pass=4)
    for image, found in zip(images, maps, strict=True):
        expected = torch.from_numpy(image).permute(2, 0, 1).float().div(255)
        np.testing.assert_array_equal(found["proximity"], expected[0].numpy())
        np.testing.assert_array_equal(found["logits"], (expected[1:] * 10).numpy())
