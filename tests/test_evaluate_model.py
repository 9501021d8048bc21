"""``cytolens evaluate --model`` with a tiny checkpoint on the bundled examples: figures, report, usage errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from cytolens.cli.main import app
from cytolens.examples import path as examples_path
from cytolens.inference.evaluate import evaluate_model
from cytolens.inference.model import load_model
from cytolens.io.registry import read_dataset
from tiny_detector import CLASSES, tiny_detector

EXAMPLES = examples_path()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny detector whose operating threshold keeps a few dozen boxes per image."""
    return tiny_detector(tmp_path_factory.mktemp("model") / "tiny.pt", score=0.15)


def invoke(*args: object) -> object:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def test_evaluate_a_model_prints_the_figures_and_writes_the_report(checkpoint: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = invoke(
        "evaluate", "--model", checkpoint, "--data", EXAMPLES, "--format", "voc", "--json", "--report", report
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert {"map50", "map50_95", "per_class", "count_mae"} <= set(figures)
    assert 0 <= figures["map50"] <= 1 and 0 <= figures["map50_95"] <= figures["map50"]
    assert list(figures["per_class"])[:3] == CLASSES  # then "unclassified", if boxes came without a class
    assert all({"ap50", "ap50_95", "count_mae"} <= set(figures["per_class"][name]) for name in CLASSES)
    assert figures["score_threshold"] == 0.15

    assert json.loads((report / "metrics.json").read_text())["map50"] == figures["map50"]
    with Image.open(report / "pr_curves.png") as picture:
        assert picture.format == "PNG"
    page = (report / "report.html").read_text()
    assert "For research use only, not for diagnosis." in page
    assert page.count("<figcaption>BloodImage_") == 3  # an untrained model errs on every image
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 2 + 3  # PR curves, counts, gallery
    assert not list(report.glob(".*.tmp"))


def test_evaluate_reproduces_the_figures_stored_in_a_checkpoint(checkpoint: Path, tmp_path: Path) -> None:
    truth = read_dataset(EXAMPLES, "voc")
    stored, _ = evaluate_model(load_model(checkpoint, device="cpu"), truth, progress=False)
    metrics = {key: stored[key] for key in ("map50", "map50_95", "count_mae")}
    recorded = tiny_detector(tmp_path / "recorded.pt", score=0.15, metrics=metrics)
    figures = json.loads(invoke("evaluate", "-m", recorded, "-d", EXAMPLES, "-f", "voc", "--json").stdout)
    assert {key: figures[key] for key in metrics} == pytest.approx(metrics, abs=1e-6)


@pytest.mark.parametrize("sources", [[], ["--predictions", "x.json", "--model", "tiny.pt"]])
def test_evaluate_needs_exactly_one_source_of_predictions(sources: list[str]) -> None:
    result = invoke("evaluate", "--data", EXAMPLES, "--format", "voc", *sources)
    assert result.exit_code == 2
    assert "--predictions" in result.output and "--model" in result.output
