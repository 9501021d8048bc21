"""``cytolens train --data STORE``: training on a store's labelled images, fine-tuning its current model."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cytolens.cli.main import app
from cytolens.models.checkpoint import read_card
from cytolens.models.registry import bundled_models
from cytolens.store.database import open_store
from cytolens.store.dataset import is_store
from cytolens.store.rounds import add_model_version, newest_model_version
from cytolens.training.store_data import current_model
from labelled_store import labelled_store
from tiny_detector import CLASSES, KWARGS, tiny_detector

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args: object) -> object:
    return CliRunner().invoke(app, [str(arg) for arg in args], env={"COLUMNS": "300"})


@pytest.fixture
def store(bccd, tmp_path):
    return labelled_store(bccd, tmp_path / "store")


@pytest.fixture
def recipe(tmp_path) -> Path:
    """The smallest box recipe: a tiny FCOS, one epoch of batches of one image, no EMA."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "task": "boxes", "architecture": "fcos", "init": "none", "kwargs": KWARGS,
        "stages": [{"freeze_blocks": 0, "epochs": 1}], "batch_size": 1, "warmup_steps": 1, "ema_decay": 0.0,
    }))
    return path


def test_train_fine_tunes_the_stores_current_model(store, recipe, tmp_path, caplog):
    store_file, root, _ = store
    base = tiny_detector(tmp_path / "base.pt")  # classes WBC, RBC, Platelets, as labelled
    with open_store(store_file, root) as opened:
        add_model_version(opened, base)
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="cytolens"):
        result = invoke("train", "--recipe", recipe, "--data", store_file, "--images", root, "--out", out,
                        "--val-fraction", "0.34", "--max-steps", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"fine-tuning the store's current model {base.resolve()} (model version 1)" in caplog.text
    card = read_card(out / "model.pt").card
    assert card.classes == tuple(CLASSES)  # the base model's class order: its class heads are kept
    provenance = card.provenance
    assert provenance.init["init"] == str(base.resolve())
    assert (provenance.data["train"].images, provenance.data["val"].images) == (2, 1)
    assert provenance.recipe["data"] == str(store_file)
    assert provenance.recipe["boxes"]["ignore_unlabelled_cells"] is True  # unlabelled cells are not background
    assert "val/map50" in card.metrics["validation"]


def test_which_model_a_store_offers(store, tmp_path):
    store_file, root, _ = store
    base = tiny_detector(tmp_path / "base.pt")
    with open_store(store_file, root) as opened:
        assert current_model(opened, "boxes") == (None, "the store records no model")
        add_model_version(opened, base)
        assert current_model(opened, "boxes")[0] == base.resolve()
        assert current_model(opened, "points")[1].endswith("is a boxes model, not a points model")
        moved = tmp_path / "moved.pt"
        shutil.move(base, moved)
        assert current_model(opened, "boxes")[1].endswith("the model file recorded in the store is no longer there)")
        tiny_detector(base, score=0.5)  # another file at the recorded place
        path, said = current_model(opened, "boxes")
        assert path is None and "changed since it was recorded in the store" in said
        add_model_version(opened, bundled_models()["rbc-morphology"])  # a pipeline, recorded by its bundled name
        assert newest_model_version(opened).name == "rbc-morphology"
        assert current_model(opened, "points")[1].endswith("is a pipeline, not a single model")
    assert is_store(store_file) and is_store("postgresql+psycopg://localhost/x")
    assert not is_store(recipe_like := tmp_path / "moved.pt") and not is_store(tmp_path / "none.db")
    assert recipe_like.is_file()


def test_bad_stores_get_one_line(bccd, tmp_path, recipe):
    missing = tmp_path / "missing.db"
    root = tmp_path / "images"
    root.mkdir()
    result = invoke("train", "--recipe", recipe, "--data", missing, "--images", root, "--out", tmp_path / "run")
    assert (result.exit_code, result.output) == (
        1, f"error: {missing}: no such annotation store (a missing store file is not created here)\n"
    )
    assert not missing.exists()
    store_file, root, _ = labelled_store(bccd, tmp_path / "empty", labelled=())
    result = invoke("train", "--recipe", recipe, "--data", store_file, "--images", root, "--out", tmp_path / "run")
    assert (result.exit_code, result.output) == (
        1, f"error: {store_file}: holds no labelled images to train on (labels are saved by cytolens review)\n"
    )
    usage = invoke("train", "--recipe", recipe, "--data", store_file, "--out", tmp_path / "run")
    assert usage.exit_code == 2 and "needs --images" in usage.output
    folds = invoke("train", "--data", store_file, "--images", root, "--folds", "2", "--out", tmp_path / "run")
    assert folds.exit_code == 2 and "takes a dataset, not an annotation store" in folds.output
    assert not (tmp_path / "run").exists()
