"""``cytolens evaluate`` with a patch classifier: crops classified whole, labelled cells cropped, the report."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import cytolens
from conftest import dataset_path
from cytolens.cli.main import app
from cytolens.errors import CytolensError
from cytolens.examples import path as examples_path
from cytolens.inference.evaluate import EvaluationOptions, classify_patches, evaluate
from cytolens.io.images import read_image
from cytolens.io.registry import read_dataset
from cytolens.models.checkpoint import save_checkpoint
from cytolens.models.registry import build_architecture
from tiny_detector import tiny_detector

pytestmark = pytest.mark.usefixtures("one_thread")

ERYTHROCYTES = ["circular", "elongated", "other"]
CHULA = [
    "normal cell", "macrocyte", "microcyte", "spherocyte", "target cell", "stomatocyte", "ovalocyte", "teardrop",
    "burr cell", "schistocyte", "uncategorised", "hypochromia", "elliptocyte",
]  # fmt: skip


def tiny_classifier(path: Path, classes: list[str], multi_label: bool = False) -> Path:
    """A seeded, untrained lite-classifier: 32 px input, patches of 40 px about a point, 2 test-time views."""
    torch.manual_seed(0)
    network = build_architecture("lite-classifier", len(classes), weights=None, hidden=16, multi_label=multi_label)
    with torch.no_grad():  # spread the logits, so that patches get different calls
        network.out[1].weight.mul_(20)
    card = {
        "task": "patches",
        "architecture": "lite-classifier",
        "kwargs": {"hidden": 16, "multi_label": multi_label},
        "classes": classes,
        "input": {"size": [32, 32]},
        "patch": {"side": 40, "views": 2},
    }
    save_checkpoint(path, network, card)
    return path


def invoke(*args: object) -> object:
    return CliRunner().invoke(app, ["evaluate", *(str(arg) for arg in args)])


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real erythrocytesIDB crops per class, in class folders."""
    root, folder = dataset_path("erythrocytesidb"), tmp_path_factory.mktemp("crops")
    for name in ERYTHROCYTES:
        (folder / name).mkdir()
        for path in sorted((root / name).iterdir())[:2]:
            shutil.copy(path, folder / name)
    return folder


@pytest.fixture(scope="module")
def chula_cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two Chula fields with 8 labelled cells each (images 24 and 357)."""
    root, folder = dataset_path("chula-rbc-12"), tmp_path_factory.mktemp("chula")
    for sub in ("Dataset", "Label"):
        (folder / sub).mkdir()
    for key in ("24", "357"):
        shutil.copy(root / "Dataset" / f"{key}.jpg", folder / "Dataset")
        shutil.copy(root / "Label" / f"{key}.txt", folder / "Label")
    return folder


def test_crops_are_classified_as_predict_classifies_them(crops: Path, tmp_path: Path) -> None:
    path = tiny_classifier(tmp_path / "classifier.pt", ERYTHROCYTES)
    report = tmp_path / "report"
    result = invoke("--model", path, "--data", crops, "--format", "folders", "--positive", "elongated",
                    "--report", report, "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["patches"] == figures["images"] == 6 and figures["views"] == 2
    assert figures["multi_label"] is False
    predicted = cytolens.load_model(path, device="cpu").predict(sorted(crops.glob("*/*")))
    calls = np.array([result.image_scores.argmax() for result in predicted])
    truth = np.repeat([0, 1, 2], 2)
    assert figures["accuracy"] == pytest.approx((calls == truth).mean())
    confusion = np.zeros((3, 3), int)
    np.add.at(confusion, (truth, calls), 1)
    assert figures["confusion"] == confusion.tolist()
    elongated = np.array([result.image_scores[1] for result in predicted])
    group = figures["positive"]
    assert group["classes"] == ["elongated"] and group["positives"] == 2 and group["negatives"] == 4
    assert group["tp"] + group["fn"] == 2 and group["tp"] + group["fp"] == int((elongated >= 0.5).sum())
    page = (report / "report.html").read_text()
    assert json.loads((report / "metrics.json").read_text()) == figures
    assert '<img alt="ROC curves" src="data:image/png;base64,' in page
    assert "<th>true \\ called</th>" in page
    wrong = int((calls != truth).sum())
    assert len(re.findall(r"<figcaption>", page)) == wrong
    assert len(re.findall(r"<figcaption>[a-z]+/[a-z0-9]+: true ", page)) == wrong


def test_labelled_cells_are_cropped_about_their_centres(chula_cells: Path, tmp_path: Path) -> None:
    model = cytolens.load_model(tiny_classifier(tmp_path / "chula.pt", CHULA), device="cpu")
    truth = read_dataset(chula_cells, "chula")
    scored = classify_patches(model, truth, progress=False)
    assert len(scored) == 16 and scored.classes == CHULA
    assert [patch.side for patch in scored.patches] == [40.0] * 16
    first = [k for k, patch in enumerate(scored.patches) if patch.image == 0]
    image = truth.images[0]
    by_hand = model.predictor.classify(read_image(image.path), image.cells.centres, [40.0] * len(first))
    np.testing.assert_allclose(scored.scores[first], by_hand, atol=1e-6)
    assert [patch.labels[0] for patch in scored.patches[: len(first)]] == image.cells.labels.tolist()
    figures = evaluate(model, truth, EvaluationOptions(progress=False)).figures
    assert figures["patches"] == 16 and figures["images"] == 2
    assert sum(map(sum, figures["confusion"])) == 16


def test_touching_cells_make_multilabel_patches(chula_cells: Path, tmp_path: Path) -> None:
    path = tiny_classifier(tmp_path / "multi.pt", CHULA, multi_label=True)
    result = invoke("--model", path, "--data", chula_cells, "--format", "chula", "--touching", 50, "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    # Image 357: cells (128, 128) normal and (83, 133) hypochromia 45 px apart, (183, 400) and (137, 413) 48 px.
    assert figures["patches"] == 14 and figures["multi_label"] is True
    assert {"exact_match", "hamming"} <= figures.keys() and "confusion" not in figures
    assert figures["per_class"]["normal cell"]["support"] == 3  # two lone cells in image 24, one in a pair


def test_classes_the_model_does_not_know_are_scored_as_never_called(crops: Path, tmp_path: Path) -> None:
    model = cytolens.load_model(tiny_classifier(tmp_path / "two.pt", ["circular", "other"]), device="cpu")
    scored = classify_patches(model, read_dataset(crops, "folders"), progress=False)
    assert scored.classes == ["circular", "other", "elongated"]
    assert (scored.scores[:, 2] == 0).all() and (scored.calls[:, 2] == 0).all()


def test_one_line_errors(crops: Path, chula_cells: Path, tmp_path: Path) -> None:
    path = tiny_classifier(tmp_path / "classifier.pt", ERYTHROCYTES)
    data = ("--data", crops, "--format", "folders")

    def one_line(result: object, fragment: str) -> None:
        assert result.exit_code == 1, result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and fragment in errors[0], result.stderr
        assert "Traceback" not in result.output

    one_line(invoke("--model", path, *data, "--positive", "sickle"), "names 'sickle', not a class")
    one_line(invoke("--model", path, *data, "--radius", 5), "--radius cannot apply to a patches model")
    one_line(invoke("--model", path, *data, "--views", 9), "test-time views must number 1 to 8, not 9")
    no_side = tmp_path / "no-side.pt"
    network = build_architecture("lite-classifier", 13, weights=None, hidden=16)
    save_checkpoint(no_side, network, {"task": "patches", "architecture": "lite-classifier", "kwargs": {"hidden": 16},
                                       "classes": CHULA, "input": {"size": [32, 32]}})
    one_line(invoke("--model", no_side, "--data", chula_cells, "--format", "chula"), "gives no patch side")
    assert invoke("--predictions", crops, "--pred-format", "folders", *data, "--positive", "other").exit_code == 2
    assert invoke("--model", path, *data, "--positive", ",").exit_code == 2


def test_detectors_refuse_classifier_options(tmp_path: Path) -> None:
    model = cytolens.load_model(tiny_detector(tmp_path / "tiny.pt"), device="cpu")
    truth = read_dataset(examples_path(), "voc")
    with pytest.raises(CytolensError, match="--positive, --touching cannot apply to a boxes model"):
        evaluate(model, truth, EvaluationOptions(positive=["WBC"], touching=3.0))
