"""Decoding choices of point models: an absolute threshold tuned beside ξ, and test-time flips."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.inference.peaks import point_maps, predict_points, tune_threshold_abs
from cytolens.models.card import PointThresholds
from cytolens.training.proximity import proximity_map


class Echo(nn.Module):
    """Proximity is the red channel, class logits the green and blue ones (commutes with flips)."""

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"proximity": images[:, :1], "logits": images[:, 1:] * 10}


class LeftLeaning(Echo):
    """Like :class:`Echo`, with the proximity map shifted 2 pixels to the left (does not commute with flips)."""

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().forward(images)
        out["proximity"] = torch.roll(out["proximity"], -2, dims=-1)
        return out


def _image(centres: np.ndarray, size: int = 96) -> np.ndarray:
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[..., 0] = np.round(proximity_map(centres, (size, size), d=7.0) * 255)
    image[..., 1] = 255 * (image[..., 0] > 0)
    return image


def test_tune_threshold_abs_drops_low_peaks_whatever_the_maximum():
    truth = Dataset(["cell"], [
        AnnotatedImage("a.png", 50, 50, "a", cells=Cells(centres=[[10.5, 10.5], [30.5, 30.5]], labels=[0, 0])),
        AnnotatedImage("b.png", 50, 50, "b", cells=Cells(centres=[[20.5, 20.5]], labels=[0])),
    ])
    found = [
        (AnnotatedImage("a.png", 50, 50, "a", cells=Cells(
            centres=[[10.5, 10.5], [30.5, 30.5], [40.5, 5.5]], labels=[0, 0, 0], scores=[0.9, 0.6, 0.2])), 0.9),
        # a faint image: ξ·max would keep its low false peak (0.3 > 0.5 * 0.35), an absolute floor does not
        (AnnotatedImage("b.png", 50, 50, "b", cells=Cells(
            centres=[[20.5, 20.5], [5.5, 45.5]], labels=[0, 0], scores=[0.35, 0.3])), 0.35),
    ]
    floor, figures = tune_threshold_abs(found, truth, radius=3.0)
    assert figures["f1"] == 1.0 and 0.3 <= floor < 0.35


def test_flips_of_a_symmetric_model_give_the_same_maps_and_peaks():
    image = _image(np.array([[20.5, 30.5], [60.5, 40.5], [47.5, 80.5]]))
    plain = point_maps(Echo(), [image], tile_size=64, overlap=16)[0]
    flipped = point_maps(Echo(), [image], tile_size=64, overlap=16, flips=True)[0]
    np.testing.assert_allclose(flipped["proximity"], plain["proximity"], atol=1e-6)
    np.testing.assert_allclose(flipped["logits"], plain["logits"], atol=1e-5)
    thresholds = PointThresholds(threshold_rel=0.5, min_distance=3)
    (one,) = predict_points(Echo(), [image], ["a", "b"], thresholds, tile_size=64, overlap=16)
    (four,) = predict_points(Echo(), [image], ["a", "b"], thresholds, tile_size=64, overlap=16, flips=True)
    np.testing.assert_array_equal(four.cells.centres, one.cells.centres)


def test_flips_average_a_shifted_map_into_a_mirror_symmetric_one():
    image = _image(np.array([[48.0, 48.0]]))  # mirror-symmetric: the centre lies between pixels 47 and 48
    shifted = point_maps(LeftLeaning(), [image], tile_size=96, overlap=16)[0]["proximity"]
    flipped = point_maps(LeftLeaning(), [image], tile_size=96, overlap=16, flips=True)[0]["proximity"]
    assert not np.allclose(shifted, shifted[:, ::-1])
    np.testing.assert_allclose(flipped[:, 2:-2], flipped[:, ::-1][:, 2:-2], atol=1e-6)  # away from the rolled edge
