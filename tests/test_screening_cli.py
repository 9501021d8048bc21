"""``cytolens screen-fit`` and ``cytolens screen``: the bundled point model on Chula RBC-12 images; a tiny pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import dataset_path
from cytolens.cli.main import app
from cytolens.examples import path as examples_path
from cytolens.models.screening import read_screener, save_screener
from cytolens.training.screening import fit_screener
from test_patch_predict import tiny_classifier
from tiny_detector import tiny_detector

pytestmark = pytest.mark.usefixtures("one_thread")

FIT_IMAGES = ["2", "4", "7"]
"""Chula images: 2 holds a labelled schistocyte, 4 and 7 do not."""
SCREENED = ["10", "11"]
POINTS = "rbc-morphology-points"
"""The bundled Chula point model (its cells carry class probabilities; faster than the rbc-morphology pipeline)."""


def invoke(*args: object) -> object:
    return CliRunner().invoke(app, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chula = dataset_path("chula-rbc-12")
    folder = tmp_path_factory.mktemp("screen-fit")
    spec = folder / "chula.yaml"
    spec.write_text(yaml.safe_dump({"format": "chula", "root": str(chula), "splits": {"lists": {"train": FIT_IMAGES}}}))
    out = folder / "schistocytes.skops"
    result = invoke(
        "screen-fit", "--data", spec, "--split", "train", "--model", POINTS, "--abnormal", "schistocyte",
        "--out", out, "--device", "cpu", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["samples"] == 3 and summary["abnormal_samples"] == 1
    assert summary["abnormal_types"] == ["schistocyte"] and summary["model"] == POINTS
    return out


def test_screen_fit_writes_a_screener_of_the_model_s_image_features(fitted: Path) -> None:
    screener = read_screener(fitted)
    assert screener.level == "images" and screener.abnormal == ("schistocyte",)
    assert screener.classes[0] == "normal cell" and len(screener.feature_names) == 2 * 13 + 1


def test_screen_writes_the_cell_outputs_and_a_verdict_per_image(fitted: Path, chula: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    images = [chula / "Dataset" / f"{name}.jpg" for name in SCREENED]
    result = invoke("screen", *images, "--screen", fitted, "--out", out, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    verdicts = pd.read_csv(out / "verdicts.csv", dtype={"image": str})
    assert verdicts.columns.tolist() == ["image", "abnormal_probability", "verdict"]
    assert verdicts["image"].tolist() == SCREENED
    assert verdicts["abnormal_probability"].between(0, 1).all()
    assert set(verdicts["verdict"]) <= {"abnormal", "normal"}
    cells = pd.read_csv(out / "cells.csv", dtype={"image": str})
    assert set(cells["image"]) == set(SCREENED) and "p_schistocyte" in cells.columns
    assert (out / "counts.csv").is_file() and (out / "overlays" / "10.png").is_file()
    summary = json.loads(result.stdout)
    assert summary["images"] == 2 and [row["image"] for row in summary["verdicts"]] == SCREENED


def test_screen_refuses_a_screener_of_other_classes_in_one_line(chula: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    screener = fit_screener(
        rng.random((40, 7)), rng.random(40) > 0.5, level="images", classes=["a", "b", "c"], abnormal=["c"],
        provenance={"model": POINTS},
    )  # fmt: skip
    save_screener(tmp_path / "abc.skops", screener)
    out = tmp_path / "out"
    result = invoke("screen", chula / "Dataset" / "10.jpg", "--screen", tmp_path / "abc.skops", "--out", out)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: {POINTS} has classes normal cell, macrocyte, microcyte, spherocyte, target cell, stomatocyte, "
        "ovalocyte, teardrop, burr cell, schistocyte, uncategorised, hypochromia, elliptocyte; the screener reads "
        "those of a model with classes a, b, c"
    ]
    assert not out.exists()


def test_a_screener_of_a_detect_classify_pipeline_loads_its_detector_and_classifier(tmp_path: Path) -> None:
    detector, classifier = tiny_detector(tmp_path / "boxes.pt"), tiny_classifier(tmp_path / "classifier.pt")
    spec = tmp_path / "examples.yaml"
    classes = {"WBC": "other", "RBC": "circular", "Platelets": "elongated"}  # the classifier's (erythrocytesIDB's)
    spec.write_text(yaml.safe_dump({"format": "voc", "root": str(examples_path()), "classes": classes}))
    screener = tmp_path / "platelets.skops"
    result = invoke(
        "screen-fit", "--data", spec, "--model", detector, "--classifier", classifier, "--abnormal", "elongated",
        "--out", screener, "--device", "cpu", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["samples"], summary["abnormal_samples"]) == (3, 2)  # BloodImage_00007 holds no platelet
    assert (summary["model"], summary["classifier"]) == (str(detector), str(classifier))
    out = tmp_path / "out"
    image = examples_path() / "JPEGImages" / "BloodImage_00007.jpg"
    result = invoke("screen", image, "--screen", screener, "--out", out, "--device", "cpu")  # model and classifier
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out / "verdicts.csv")["image"].tolist() == ["BloodImage_00007"]
    assert "p_elongated" in pd.read_csv(out / "cells.csv").columns
