"""The bundled red-cell models: the `rbc-morphology` pipeline (a red-cell point detector and a 13-class crop
classifier) and the single-pass `rbc-morphology-points` point model: listed, describe themselves, evaluate as
their stored figures say."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cytolens.cli.main import app
from cytolens.io import read_dataset
from cytolens.models.card import Proximity
from cytolens.models.checkpoint import StoredPipeline, read_card, read_stored
from cytolens.models.registry import bundled_models

pytestmark = pytest.mark.skipif(
    not {"rbc-morphology", "rbc-morphology-points"} <= set(bundled_models()), reason="bundled models not built yet"
)

REPO = Path(__file__).resolve().parents[1]
KEYS = ("precision", "recall", "f1", "class_accuracy", "macro_f1")


def test_listed_with_its_metadata():
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    models = {m["name"]: m for m in json.loads(result.stdout)["models"]}
    assert len(models["rbc-morphology-points"]["classes"]) == 13
    assert models["rbc-morphology-points"]["licence"].startswith("MIT")
    card, _ = read_card(bundled_models()["rbc-morphology-points"])
    assert card.task == "points" and card.proximity == Proximity(d=16.0, a=3.0)
    assert 0 < card.thresholds.threshold_rel < 1 and card.evaluation.radius == 12.0
    assert card.provenance.recipe["ignore_unlabelled_cells"] is True
    assert bundled_models()["rbc-morphology-points"].stat().st_size <= 25e6


def test_evaluate_on_a_chula_folder(chula, tmp_path):
    for sub in ("Dataset", "Label"):
        (tmp_path / sub).mkdir()
    for key in ("40", "598", "100"):
        shutil.copy(chula / "Dataset" / f"{key}.jpg", tmp_path / "Dataset")
        shutil.copy(chula / "Label" / f"{key}.txt", tmp_path / "Label")
    args = ["evaluate", "-m", "rbc-morphology-points", "--data", str(tmp_path), "--format", "chula", "--radius", "12"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert all(isinstance(figures[key], float) for key in KEYS), figures
    labelled = sum(len(image.cells) for image in read_dataset(tmp_path, "chula"))
    assert figures["details"]["points"]["tp"] + figures["details"]["points"]["fn"] == labelled
    ignored = json.loads(CliRunner().invoke(app, [*args, "--ignore-unlabelled", "--json"]).stdout)
    assert ignored["ignored_detections"] > 50  # image 598 labels 4 of its ~90 cells
    assert ignored["precision"] > figures["precision"] and ignored["recall"] == figures["recall"]


def test_evaluate_reproduces_the_stored_test_figures(chula):
    card, _ = read_card(bundled_models()["rbc-morphology-points"])
    stored = card.metrics["test"]
    spec = REPO / "configs" / "chula-split.yaml"
    args = ["evaluate", "--model", "rbc-morphology-points", "--data", str(spec), "--split", "test", "--radius", "12"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    for key in KEYS:
        assert figures[key] == pytest.approx(stored[key], abs=1e-6), key


def test_the_pipeline_is_listed_as_one_with_its_two_models():
    stored = read_stored(bundled_models()["rbc-morphology"])
    assert isinstance(stored, StoredPipeline)
    detector, classifier = stored.detector.card, stored.classifier.card
    assert detector.task == "points" and detector.classes == ("red cell",)
    assert classifier.task == "patches" and len(classifier.classes) == 13 and classifier.patch.views == 8
    assert classifier.thresholds.prior_power > 0 and set(classifier.thresholds.class_prior) == set(classifier.classes)
    test = stored.card.metrics["test"]
    assert test["f1"] >= 0.95 and test["class_accuracy"] > 0.85
    assert bundled_models()["rbc-morphology"].stat().st_size <= 25e6


def test_the_pipeline_reproduces_its_stored_figures_on_the_sample_of_test_images(chula, tmp_path):
    sample = read_stored(bundled_models()["rbc-morphology"]).card.metrics["sample"]
    for sub in ("Dataset", "Label"):
        (tmp_path / sub).mkdir()
    for key in sample["images"]:
        shutil.copy(chula / "Dataset" / f"{key}.jpg", tmp_path / "Dataset")
        shutil.copy(chula / "Label" / f"{key}.txt", tmp_path / "Label")
    args = ["evaluate", "--model", "rbc-morphology", "--data", str(tmp_path), "--format", "chula", "--radius", "12"]
    result = CliRunner().invoke(app, [*args, "--ignore-unlabelled", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    for key in KEYS:
        assert figures[key] == pytest.approx(sample[key], abs=1e-6), key
