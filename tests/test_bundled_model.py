"""The bundled `blood-cells` model: listed, describes itself, counts the example cells, reproduces its figures."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import cytolens
from cytolens.cli.main import app
from cytolens.examples import path as examples_path
from cytolens.io import read_dataset
from cytolens.models.checkpoint import read_card
from cytolens.models.registry import bundled_models

pytestmark = pytest.mark.skipif("blood-cells" not in bundled_models(), reason="bundled model not built yet")


def test_listed_with_its_metadata():
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    models = {m["name"]: m for m in json.loads(result.stdout)["models"]}
    assert models["blood-cells"]["classes"] == ["WBC", "RBC", "Platelets"]
    assert models["blood-cells"]["licence"].startswith("MIT")
    card, _ = read_card(bundled_models()["blood-cells"])
    assert card.task == "boxes" and card.input.size == (640, 480) and card.input.mpp == 0.075
    assert set(card.thresholds.score) == {"WBC", "RBC", "Platelets"} and card.thresholds.nms == 0.5
    assert card.input.colour is not None and card.kwargs["detections_per_img"] == 1000
    assert card.report.ratios == (("RBC", "WBC"), ("Platelets", "RBC"))
    assert bundled_models()["blood-cells"].stat().st_size <= 25e6


@pytest.fixture(scope="module")
def example_counts() -> list[tuple[str, dict[str, int], dict[str, int]]]:
    """Per example image: its id, the bundled model's counts and the annotated counts (predicted once)."""
    truth = read_dataset(examples_path(), "voc")
    model = cytolens.load_model("blood-cells", device="cpu")
    results = {r.image_id: r for r in model.predict(examples_path() / "JPEGImages")}
    rows = []
    for image in truth:
        true = {name: int((image.cells.labels == i).sum()) for i, name in enumerate(truth.classes)}
        rows.append((image.image_id, results[image.image_id].counts(), true))
    return rows


def test_example_wbc_counts_equal_the_annotations(example_counts):
    for image_id, found, true in example_counts:
        assert found["WBC"] == true["WBC"], image_id


def test_example_rbc_counts_at_least_the_boxed_ones(example_counts):
    """BCCD boxes only some of the red cells (about half): the model finds at least those (measured 19/17, 23/17,
    20/14; the images are not among those BCCD-TXL re-annotated, so complete counts are measured there instead)."""
    for image_id, found, true in example_counts:
        assert true["RBC"] <= found["RBC"] <= 2 * true["RBC"], (image_id, found, true)


def test_evaluate_reproduces_the_stored_test_figures(bccd_txl):
    card, _ = read_card(bundled_models()["blood-cells"])
    stored = card.metrics["test"]
    assert stored["data"] == "bccd-txl:test"
    data = str(bccd_txl / "data.yaml")
    result = CliRunner().invoke(
        app, ["evaluate", "--model", "blood-cells", "--data", data, "--format", "yolo", "--split", "test", "--json"]
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["map50"] == pytest.approx(stored["map50"], abs=1e-6)
    assert figures["map50_95"] == pytest.approx(stored["map50_95"], abs=1e-6)
    for name in ("WBC", "RBC", "Platelets"):
        assert figures["per_class"][name]["ap50"] == pytest.approx(stored["per_class"][name]["ap50"], abs=1e-6)
    # issue 10's targets on completely labelled smears
    per_class = figures["per_class"]
    assert figures["map50"] >= 0.95
    assert abs(per_class["RBC"]["predicted"] - per_class["RBC"]["true"]) <= 0.05 * per_class["RBC"]["true"]
    assert per_class["RBC"]["count_mae"] <= 2.0
    assert per_class["WBC"]["count_mae"] <= 0.3 and per_class["Platelets"]["count_mae"] <= 0.3
