"""A box model trained at a stage size smaller than its fields predicts a field as training saw it: whole, resized.

Box training resizes every field to the stage's ``max_size`` (640 x 480 BCCD fields to 256 x 192 here); the card
records the fields' size as ``input.tile_size``, so that prediction resizes a field of that size the same way
instead of cutting it into input-sized tiles at full scale (cells 2.5 times as large as the model learnt them).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import cytolens
from cytolens.data.annotations import Dataset
from cytolens.inference.boxes import BoxTiling
from cytolens.inference.model import CellModel
from cytolens.io.images import read_image
from cytolens.io.spec import load_data
from cytolens.training.box_data import BoxDataset
from cytolens.training.recipe import Recipe
from cytolens.training.stages import InputSize, Stage
from cytolens.training.tasks import task_components
from tiny_detector import KWARGS, tiny_detector

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def fields(bccd_txl: Path) -> Dataset:
    data = load_data(bccd_txl / "data.yaml", "yolo", "train")
    return dataclasses.replace(data, images=data.images[:3])


def _model(path: Path, size: tuple[int, int], tile_size: int | None) -> CellModel:
    return cytolens.load_model(
        tiny_detector(path, input={"size": list(size), "tile_size": tile_size}), device="cpu", backend="torch"
    )


def _inputs_seen(model: CellModel, pixels: np.ndarray) -> list[tuple[int, int]]:
    """``(height, width)`` of every input the detector's network saw for ``pixels`` (tiles resized to its input)."""
    seen: list[tuple[int, int]] = []
    hook = model.network.transform.register_forward_hook(
        lambda module, args, out: seen.extend(tuple(size) for size in out[0].image_sizes)
    )
    try:
        model.predict([pixels], score_threshold=0.0)
    finally:
        hook.remove()
    return seen


def test_a_training_size_field_runs_whole_at_the_trained_scale(fields, tmp_path: Path):
    stages = [Stage(freeze_blocks=0, epochs=1, max_size=256)]
    recipe = Recipe(task="boxes", architecture="fcos", data="unused.yaml", kwargs=KWARGS, stages=stages)
    size = InputSize(stages, base=416)
    sections = task_components("boxes").describe(None, recipe, fields, size)
    assert sections.size == (256, 192) and sections.tile_size == 640  # the 640 x 480 fields, trained at 256 x 192
    trained, _ = BoxDataset(fields, size, train=False)[0]  # a field as training resized it
    assert tuple(trained.shape[1:]) == (192, 256)

    model = _model(tmp_path / "trained.pt", sections.size, sections.tile_size)
    assert model.predictor.tiling == BoxTiling(640, 480, 128)
    field = read_image(fields.images[0].path)
    assert field.shape[:2] == (480, 640)
    assert _inputs_seen(model, field) == [(192, 256)]  # one pass over the whole field, resized as in training
    mosaic = np.concatenate([field, field], axis=1)  # larger than any training field: tiled, each tile resized
    assert _inputs_seen(model, mosaic) == [(192, 256)] * len(model.predictor.tiling.windows(1280, 480))

    old = _model(tmp_path / "old.pt", sections.size, None)  # a card from before tile_size was recorded
    assert old.predictor.tiling == BoxTiling(256, 192, 51)  # tiles at the input size, as before
    seen = _inputs_seen(old, field)
    assert len(seen) == len(BoxTiling(256, 192, 51).windows(640, 480)) > 1 and set(seen) == {(192, 256)}
