"""Overlays: class legend with counts that wraps to fit 13 classes, box labels readable on any background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytolens.data.cells import Cells
from cytolens.io.colors import class_color
from cytolens.results.overlay import text_colour
from cytolens.results.result import Result

CHULA = [
    "normal cell", "macrocyte", "microcyte", "spherocyte", "target cell", "stomatocyte", "ovalocyte", "teardrop",
    "burr cell", "schistocyte", "uncategorised", "hypochromia", "elliptocyte",
]


def legend_rows(overlay: np.ndarray) -> int:
    """Rows at the top of an overlay of a black image that the legend's light band covers."""
    light = (overlay[:, :2] > 100).all(axis=(1, 2))  # the band starts at the left edge, before any swatch
    return int(np.argmin(light)) if not light.all() else len(light)


def points(classes: list[str], per_class: int = 2) -> Result:
    """A point result on a black 640x480 image: ``per_class`` cells of every class, in the lower half."""
    n = len(classes) * per_class
    centres = np.column_stack([np.linspace(20, 620, n), np.full(n, 400.0)])
    cells = Cells(centres=centres, labels=np.arange(n) % len(classes), scores=np.full(n, 0.9))
    return Result(Path("black.png"), 640, 480, cells=cells, classes=classes, pixels=np.zeros((480, 640, 3), np.uint8))


def test_the_legend_of_13_classes_wraps_onto_a_few_lines_and_three_classes_take_one() -> None:
    one_line = legend_rows(points(["WBC", "RBC", "Platelets"]).plot())
    wrapped = legend_rows(points(CHULA).plot())
    assert 10 <= one_line <= 25
    assert 1.5 * one_line <= wrapped <= 4 * one_line < 480 // 4  # a line more or two, under a quarter of the image


def test_the_legend_shows_each_class_found_by_its_colour() -> None:
    overlay = points(["WBC", "RBC", "Platelets"]).plot()
    band = overlay[: legend_rows(overlay)].reshape(-1, 3)
    for index in range(3):
        assert (band == class_color(index)).all(axis=1).sum() > 20  # its swatch


def test_a_box_label_sits_on_a_tag_of_its_class_colour_with_contrasting_text() -> None:
    cells = Cells(boxes=[[100, 200, 300, 400]], labels=[1], scores=[0.87])
    for background in (0, 255):  # readable on black and on white
        pixels = np.full((480, 640, 3), background, np.uint8)
        overlay = Result(Path("a.png"), 640, 480, cells=cells, classes=["WBC", "RBC"], pixels=pixels).plot()
        tag = overlay[186:200, 100:150].reshape(-1, 3)  # above the box's top-left corner
        colour = class_color(1)
        assert (tag == colour).all(axis=1).mean() > 0.5
        assert (tag == text_colour(colour)).all(axis=1).any()


@pytest.mark.parametrize(("background", "text"), [((255, 255, 0), (0, 0, 0)), ((31, 119, 180), (255, 255, 255))])
def test_text_is_black_on_light_colours_and_white_on_dark_ones(background: tuple, text: tuple) -> None:
    assert text_colour(background) == text


def test_no_cells_says_so_and_keeps_the_image_size() -> None:
    result = points(["WBC"], per_class=0)
    overlay = result.plot()
    assert overlay.shape == (480, 640, 3) and legend_rows(overlay) > 0
