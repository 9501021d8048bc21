"""Colour statistics in the model card (issue 10): training images' colours recorded, and how far an image lies
from them, on generated images and on real ones (a blood-smear model under H&E histology).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from skimage.color import rgb2lab

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.errors import ModelError
from cytolens.io.images import read_image
from cytolens.models.card import ColourStats, InputConfig, ModelCard, PointThresholds
from cytolens.models.checkpoint import read_card
from cytolens.models.colour import (
    FOREIGN_COLOUR,
    MIN_SPREAD,
    colour_distance,
    colour_statistics,
    dataset_colour,
    mean_colour,
)
from cytolens.models.registry import resolve_model


def _uniform(rgb: tuple[int, int, int], height: int = 40, width: int = 60) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (height, width, 3)).copy()


def _lab(rgb: tuple[int, int, int]) -> np.ndarray:
    return rgb2lab(np.array([[rgb]], np.uint8))[0, 0]


def test_statistics_are_the_mean_and_spread_of_the_images_mean_colours():
    pink, blue = (230, 180, 200), (120, 110, 200)
    stats = colour_statistics([_uniform(pink), _uniform(blue, 400, 10)])  # each image weighs the same
    both = np.array([_lab(pink), _lab(blue)])
    assert stats.images == 2
    assert np.allclose(stats.mean, both.mean(axis=0)) and np.allclose(stats.spread, both.std(axis=0))


def test_a_large_image_is_measured_on_a_grid_of_its_pixels():
    pixels = np.zeros((3000, 4000, 3), np.uint8)
    pixels[:, 2000:] = 255  # half black, half white
    assert np.allclose(mean_colour(pixels), [50.0, 0.0, 0.0], atol=0.5)
    with pytest.raises(ValueError, match="an RGB image of shape"):
        mean_colour(np.zeros((5, 5), np.uint8))


def test_distance_counts_spreads_and_floors_a_small_spread():
    stats = ColourStats(mean=(60.0, 10.0, -5.0), spread=(4.0, 2.0, 0.0), images=10)
    pixels = _uniform((200, 140, 160))
    lab = _lab((200, 140, 160))
    expected = np.sqrt(np.mean(((lab - stats.mean) / [4.0, 2.0, MIN_SPREAD]) ** 2))
    assert colour_distance(stats, pixels) == pytest.approx(expected, rel=1e-6)
    same = ColourStats(mean=tuple(lab), spread=(1.0, 1.0, 1.0), images=1)
    assert colour_distance(same, pixels) == pytest.approx(0.0, abs=1e-6)


def test_a_dataset_is_sampled_evenly(tmp_path):
    from PIL import Image

    images = []
    for i in range(7):
        path = tmp_path / f"{i}.png"
        Image.fromarray(_uniform((10 * i, 100, 100))).save(path)
        images.append(AnnotatedImage(path, 60, 40, str(i)))
    stats = dataset_colour(Dataset(["cell"], images), limit=3)
    assert stats == colour_statistics(read_image(tmp_path / f"{i}.png") for i in (0, 3, 6))
    assert dataset_colour(Dataset(["cell"], [])) is None


CARD = ModelCard(task="points", architecture="fcn-small", kwargs={}, classes=("cell",), thresholds=PointThresholds())


def test_the_card_stores_the_colours_and_checks_them(tmp_path):
    stats = ColourStats(mean=(61.8, -0.9, 0.5), spread=(6.0, 4.0, 4.5), images=50)
    card = replace(CARD, input=InputConfig(colour=stats))
    assert ModelCard.from_dict(card.to_dict(), tmp_path / "m.pt") == card
    assert ModelCard.from_dict(CARD.to_dict(), tmp_path / "m.pt").input.colour is None
    bad = card.to_dict()
    bad["input"]["colour"]["spread"] = [6.0, -1.0, 4.5]
    with pytest.raises(ModelError, match=r"m.pt: metadata input.colour.spread\[1\] must lie in"):
        ModelCard.from_dict(bad, tmp_path / "m.pt")
    bad["input"]["colour"] = {"mean": [1.0, 2.0], "spread": [1.0, 1.0, 1.0], "images": 3}
    with pytest.raises(ModelError, match=r"metadata input.colour.mean must be three numbers"):
        ModelCard.from_dict(bad, tmp_path / "m.pt")


def test_histology_is_foreign_to_the_red_cell_model_and_its_own_images_are_not(chula, crchisto):
    card, _ = read_card(resolve_model("rbc-morphology-points"))
    stats = card.input.colour
    assert stats is not None and stats.images == 50
    smears = [read_image(chula / "Dataset" / f"{n}.jpg") for n in (2, 92, 131)]
    sections = [read_image(path) for path in sorted(crchisto.glob("*/img1*/img1*.png"))[:3]]
    assert max(colour_distance(stats, pixels) for pixels in smears) < FOREIGN_COLOUR
    assert min(colour_distance(stats, pixels) for pixels in sections) > FOREIGN_COLOUR
