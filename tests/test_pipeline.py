"""Detect -> classify pipelines: files that round-trip and refuse what they must not hold, scaled windows, outputs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from conftest import dataset_path
from cytolens.cli.main import app
from cytolens.errors import ModelError
from cytolens.examples import path as examples_path
from cytolens.inference.model import load_model
from cytolens.inference.pipeline import Pipeline
from cytolens.io.images import read_image
from cytolens.models.checkpoint import (
    PIPELINE_FORMAT,
    StoredPipeline,
    load_plain,
    read_card,
    read_stored,
    save_checkpoint,
    save_pipeline,
)
from cytolens.models.registry import build_architecture
from test_patch_predict import CLASSES, tiny_classifier
from tiny_detector import tiny_detector

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLE = sorted((examples_path() / "JPEGImages").glob("*.jpg"))[0]


def tiny_points(path: Path, mpp: float = 0.05) -> Path:
    """Write a seeded, untrained one-class point model (fcn-small) that takes images at ``mpp`` µm/px."""
    torch.manual_seed(0)
    network = build_architecture("fcn-small", num_classes=1, weights=None)
    card = {
        "task": "points", "architecture": "fcn-small", "kwargs": {}, "classes": ["cell"], "input": {"mpp": mpp},
        "thresholds": {"threshold_rel": 0.6, "threshold_abs": 0.0, "min_distance": 12},  # its map is flat: noise peaks
    }  # fmt: skip
    save_checkpoint(path, network, card)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    boxes, points, classifier = tiny_detector(folder / "boxes.pt"), tiny_points(folder / "points.pt"), None
    classifier = tiny_classifier(folder / "classifier.pt")
    save_pipeline(folder / "pipeline.pt", read_card(boxes), read_card(classifier), {"test": {"f1": 0.5}}, "a notice")
    return {"boxes": boxes, "points": points, "classifier": classifier, "pipeline": folder / "pipeline.pt"}


def invoke(*args: object) -> object:
    return CliRunner().invoke(app, [str(arg) for arg in args], env={"COLUMNS": "300"})


def test_a_pipeline_file_round_trips_and_predicts_as_its_two_models(files):
    stored = read_stored(files["pipeline"])
    assert isinstance(stored, StoredPipeline) and stored.card.metrics == {"test": {"f1": 0.5}}
    assert stored.describe() == "boxes detector (fcos) + patch classifier (lite-classifier)"
    for part, name in ((stored.detector, "boxes"), (stored.classifier, "classifier")):
        card, state = read_card(files[name])
        assert part.card == card and state.keys() == part.state.keys()
        assert all(torch.equal(state[key], part.state[key]) for key in state)
    loaded = load_model(files["pipeline"], device="cpu")
    given = load_model(files["boxes"], device="cpu", classifier=files["classifier"])
    assert isinstance(loaded, Pipeline) and loaded.classes == CLASSES and loaded.task == "boxes"
    assert loaded.card.metrics == {"test": {"f1": 0.5}} and loaded.card.notice == "a notice"
    (first,), (second,) = loaded.predict([EXAMPLE], score_threshold=0.2), given.predict([EXAMPLE], score_threshold=0.2)
    assert len(first.cells) > 0 and first.classes == CLASSES
    np.testing.assert_array_equal(first.cells.boxes, second.cells.boxes)
    np.testing.assert_array_equal(first.cells.probabilities, second.cells.probabilities)


def test_each_detected_cell_is_classified_in_its_squared_padded_box(files):
    pipeline = load_model(files["boxes"], device="cpu", classifier=files["classifier"])
    (result,) = pipeline.predict([EXAMPLE], score_threshold=0.2, views=1)
    boxes = result.cells.boxes
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * 1.1  # the card's default pad 0.1
    expected = pipeline.classifier.with_views(1).predictor.classify(read_image(EXAMPLE), result.cells.centres, sides)
    np.testing.assert_allclose(result.cells.probabilities, expected, atol=1e-6)
    np.testing.assert_array_equal(result.cells.labels, expected.argmax(axis=1))
    detected = pipeline.finder.predict([EXAMPLE], score_threshold=0.2)[0].cells
    np.testing.assert_array_equal(result.cells.scores, detected.scores)  # detection scores stay


def test_windows_around_points_are_scaled_by_the_two_models_micrometres_per_pixel(files):
    pipeline = load_model(files["points"], device="cpu", classifier=files["classifier"])
    assert pipeline.image_scale(None) == 2.0  # taken at the detector's 0.05 µm/px: 2 image pixels per 0.1 µm pixel
    assert pipeline.image_scale(0.1) == 1.0
    pixels = read_image(dataset_path("chula-rbc-12") / "Dataset" / "2.jpg")[:160, :160]
    for mpp, scale in ((None, 2.0), (0.1, 1.0)):  # at 0.1 µm/px the image is halved for the detector
        (result,) = pipeline.predict([pixels], mpp=mpp)
        assert len(result.cells) > 0
        sides = np.full(len(result.cells), 40 * scale)  # the classifier's patch.side: 40 px at 0.1 µm/px
        views = pipeline.patches.views(scale)
        expected = pipeline.patches.classify(pixels, result.cells.centres, sides, views)
        np.testing.assert_allclose(result.cells.probabilities, expected, atol=1e-6)


def test_what_does_not_make_a_pipeline_is_refused(files, tmp_path):
    with pytest.raises(ModelError, match="lite-classifier classifies patches, it finds no cells"):
        save_pipeline(tmp_path / "p.pt", read_card(files["classifier"]), read_card(files["classifier"]))
    with pytest.raises(ModelError, match="the classifier must be a patch classifier, not a boxes model"):
        load_model(files["boxes"], device="cpu", classifier=files["boxes"])
    sideless = tiny_classifier(tmp_path / "sideless.pt", patch={"views": 1})
    with pytest.raises(ModelError, match="gives no patch side .* that a points detector marks"):
        load_model(files["points"], device="cpu", classifier=sideless)
    with pytest.raises(ModelError, match="a pipeline .* has its classifier already"):
        load_model(files["pipeline"], device="cpu", classifier=files["classifier"])
    with pytest.raises(ModelError, match="a pipeline \\(boxes detector \\(fcos\\) .*\\), not a single model"):
        read_card(files["pipeline"])


def _rewritten(files: dict[str, Path], path: Path, **changes: object) -> Path:
    payload = load_plain(files["pipeline"])
    torch.save({**payload, **changes}, path)
    return path


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"extra": 1}, "not a cytolens pipeline file: unknown entries 'extra'"),
        ({"detector": {"nested": argparse.Namespace()}}, "refused: it holds objects other than tensors and plain data"),
        ({"pipeline": json.dumps({"metrics": {}, "script": "x"})}, "its pipeline card must be a mapping of metrics"),
        ({"cytolens": PIPELINE_FORMAT + 1}, f"pipeline format {PIPELINE_FORMAT + 1} is not one this cytolens reads"),
        ({"classifier": {"cytolens": 2, "card": "{}", "state_dict": {}}}, "(classifier): checkpoint metadata lacks"),
    ],
)
def test_a_pipeline_file_holding_anything_else_is_refused_in_one_line(files, tmp_path, changes, problem):
    bad = _rewritten(files, tmp_path / "bad.pt", **changes)
    for args in (["models", bad], ["predict", EXAMPLE, "--model", bad, "--out", tmp_path / "out"]):
        result = invoke(*args)
        assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
        assert result.stderr.startswith(f"error: {bad}") and problem in result.stderr, result.stderr


def test_predict_with_a_classifier_writes_probabilities_that_parse(files, tmp_path):
    out = tmp_path / "out"
    args = ["predict", EXAMPLE, "--model", files["boxes"], "--classifier", files["classifier"], "--out", out]
    result = invoke(*args, "--score-threshold", "RBC=0.2,WBC=0.2,Platelets=0.2", "--views", 2, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    cells = pd.read_csv(out / "cells.csv")
    columns = [f"p_{name}" for name in CLASSES]
    assert list(cells.columns) == ["image", "x", "y", "class", "score", "x1", "y1", "x2", "y2", *columns]
    np.testing.assert_allclose(cells[columns].sum(axis=1), 1, atol=1e-6)
    assert (cells["class"] == cells[columns].idxmax(axis=1).str[2:]).all()
    assert summary["cells"] == {name: int((cells["class"] == name).sum()) for name in CLASSES}
    features = json.loads((out / "geojson" / f"{EXAMPLE.stem}.geojson").read_text())["features"]
    assert len(features) == len(cells) and set(columns) <= set(features[0]["properties"]["measurements"])
    counts = pd.read_csv(out / "counts.csv")
    assert counts[CLASSES].sum(axis=1).tolist() == [len(cells)]
    again = invoke("predict", EXAMPLE, "--model", files["pipeline"], "--out", tmp_path / "again", "--views", 2,
                   "--score-threshold", "0.2")  # fmt: skip
    assert again.exit_code == 0, again.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again" / "cells.csv"), cells)


def test_predict_with_a_classifier_on_crops_writes_an_image_table(files, tmp_path):
    root = dataset_path("erythrocytesidb")
    crops = [root / "circular" / "c0001.jpg", root / "elongated" / "e0001.jpg"]
    result = invoke("predict", *crops, "--model", files["classifier"], "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "out" / "images.csv")
    assert list(table.columns) == ["image", "class", *(f"p_{name}" for name in CLASSES)]
    assert table["image"].tolist() == ["c0001", "e0001"]
    np.testing.assert_allclose(table[[f"p_{name}" for name in CLASSES]].sum(axis=1), 1, atol=1e-6)
    counts = pd.read_csv(tmp_path / "out" / "counts.csv")
    assert counts["total"].tolist() == [1, 1]  # each crop is one cell, of the type called
    assert (tmp_path / "out" / "overlays" / "c0001.png").is_file()
    refused = invoke("predict", *crops, "--model", files["boxes"], "--views", 2, "--out", tmp_path / "no")
    assert refused.exit_code == 2 and "test-time views are for patch classifiers" in refused.output


def test_models_and_export_say_what_a_file_is(files, tmp_path):
    described = json.loads(invoke("models", files["pipeline"], "--json").stdout)
    assert described["kind"] == "pipeline" and described["task"] == "boxes" and described["classes"] == CLASSES
    assert described["stages"]["detector"]["classes"] == ["WBC", "RBC", "Platelets"]
    assert json.loads(invoke("models", files["classifier"], "--json").stdout)["kind"] == "model"
    built = tmp_path / "built.pt"
    result = invoke("export", files["boxes"], "--classifier", files["classifier"], "--pipeline", built, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["kind"] == "boxes detector (fcos) + patch classifier (lite-classifier)"
    assert isinstance(read_stored(built), StoredPipeline)
    refused = invoke("export", files["pipeline"], "--onnx", tmp_path / "p.onnx")
    assert refused.exit_code == 1 and "a pipeline (a boxes detector + a patch classifier)" in refused.stderr
    assert invoke("export", files["boxes"], "--pipeline", tmp_path / "x.pt").exit_code == 2  # no --classifier


def test_a_pipeline_carries_its_detectors_thresholds_as_stored(files, tmp_path):
    score = {"WBC": 0.25, "RBC": 0.2, "Platelets": 0.3}
    boxes = tiny_detector(tmp_path / "per-class.pt", score=score)  # type: ignore[arg-type]
    pipeline = load_model(boxes, device="cpu", classifier=files["classifier"])
    assert pipeline.card.thresholds == pipeline.finder.card.thresholds and pipeline.thresholds.min_score == score
    assert pipeline.card.classes == tuple(CLASSES) and pipeline.count_threshold == 0.2  # its cells: the classifier's
    assert pipeline.with_thresholds(score=0.1).card.thresholds.min_score == 0.1
    result = invoke("predict", EXAMPLE, "--model", boxes, "--classifier", files["classifier"], "--out", tmp_path / "o",
                    "--verbose")  # fmt: skip
    assert result.exit_code == 0 and "score threshold WBC 0.25, RBC 0.2, Platelets 0.3" in result.output, result.output
