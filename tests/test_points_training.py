"""A short training run of the point task on real Chula RBC-12 images (fcn-small, tiny crops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from cytolens.inference.peaks import THRESHOLD_GRID, predict_points
from cytolens.io.images import read_image
from cytolens.io.spec import load_data
from cytolens.models.card import Evaluation, Proximity
from cytolens.models.checkpoint import load_network, save_checkpoint
from cytolens.models.registry import build_architecture
from cytolens.training.point_data import PointDataset, collate
from cytolens.training.proximity import proximity_loss
from cytolens.training.recipe import Recipe
from cytolens.training.train import train

TRAIN_IDS = ["2", "4", "5", "6"]
VAL_IDS = ["7"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def chula_spec(chula, tmp_path):
    spec = {"format": "chula", "root": str(chula), "splits": {"lists": {"train": TRAIN_IDS, "val": VAL_IDS}}}
    path = tmp_path / "chula.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _loss(model: torch.nn.Module, batch: dict) -> float:
    """Proximity loss of ``model`` (batch statistics, as in training) on fixed whole-image batches."""
    model.train()
    with torch.no_grad():
        return proximity_loss(model(batch["image"])["proximity"], batch["proximity"]).item()


def _recipe(spec, init, **changes) -> Recipe:
    values = {
        "task": "points", "architecture": "fcn-small", "data": str(spec), "init": str(init), "batch_size": 2,
        "lr": 0.01, "warmup_steps": 1, "ema_decay": 0.0, "crop_size": 96, "proximity_d": 16.0,
        "match_radius": 12.0, "min_distance": 8,
    }
    return Recipe.from_dict({**values, **changes})


def test_short_training_lowers_the_loss_and_exports_a_model(chula_spec, tmp_path):
    torch.manual_seed(0)
    start = build_architecture("fcn-small", num_classes=13, weights=None)
    classes = load_data(chula_spec).classes
    save_checkpoint(tmp_path / "start.pt", start, {"task": "points", "architecture": "fcn-small", "kwargs": {},
                                                   "classes": classes})
    out = train(_recipe(chula_spec, tmp_path / "start.pt"), tmp_path / "run", max_steps=30, progress=False)

    model, card = load_network(out)
    assert card.task == "points" and list(card.classes) == classes
    assert card.proximity == Proximity(d=16.0, a=3.0) and card.input.size == (96, 96)
    assert card.thresholds.threshold_rel in THRESHOLD_GRID
    assert card.thresholds.min_distance == 8 and card.evaluation == Evaluation(radius=12.0)
    assert 0 <= card.metrics["validation"]["val/f1"] <= 1

    train_images = load_data(chula_spec, split="train")
    (batch,) = collate([PointDataset(train_images, d=16.0, train=False)[i] for i in range(2)])
    before, _ = load_network(tmp_path / "start.pt")
    assert _loss(model, batch) < _loss(before, batch)

    result = predict_points(model.eval(), [read_image(train_images.images[0].path)], card.classes, card.thresholds)[0]
    assert result.kind == "points" and (result.width, result.height) == (640, 480)
    assert result.cells.probabilities is None or result.cells.probabilities.shape == (len(result.cells), 13)


def test_training_with_auxiliary_box_data(chula_spec, tmp_path):
    from cytolens import examples

    recipe = _recipe(
        chula_spec, "none", val_split=None, aux_data=str(examples.path()), aux_format="voc", aux_classes=["RBC"],
        aux_scale=0.5, aux_weight=5.0,
    )
    out = train(recipe, tmp_path / "aux", max_steps=2, progress=False)
    model, card = load_network(out)
    recipe = card.provenance.recipe
    assert recipe["points"]["aux_weight"] == 5.0 and recipe["points"]["aux_classes"] == ["RBC"]
    assert np.isfinite(card.thresholds.threshold_rel)
