"""The ``cytolens`` command line, run in-process with Typer's ``CliRunner`` on real data."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cytolens.cli.main import app
from cytolens.errors import DataError
from cytolens.examples import path as examples_path
from cytolens.io.registry import read_dataset, write_dataset
from cytolens.io.spec import load_data
from helpers import assert_same_annotations


def invoke(*args: object) -> object:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def json_out(result: object) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_one_line_error(result: object, *fragments: str) -> None:
    """Exit code 1 and exactly one stderr line ``error: ...`` containing ``fragments``; no traceback."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]
    assert "Traceback" not in result.output


def write_yaml(path: Path, content: dict) -> Path:
    path.write_text(yaml.safe_dump(content))
    return path


def test_stats_json_on_bccd_counts_every_box(bccd: Path) -> None:
    result = invoke("stats", "--data", bccd, "--format", "voc", "--json")
    figures = json_out(result)
    assert figures["images"] == 364
    assert figures["objects"] == figures["boxes"] == 4886
    assert figures["per_class"] == {"WBC": 372, "RBC": 4153, "Platelets": 361}
    assert figures["splits"] == {"test": 72, "train": 205, "trainval": 292, "val": 87}
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2  # the two zero-size boxes, one line each
    assert "BloodImage_00338.xml" in warnings[0] and "BloodImage_00343.xml" in warnings[1]


def test_stats_on_a_spec_file_merging_classes(bccd: Path, tmp_path: Path) -> None:
    spec = write_yaml(
        tmp_path / "cells.yaml",
        {"format": "voc", "root": str(bccd), "classes": {"RBC": "cell", "WBC": "cell", "Platelets": "platelet"}},
    )
    figures = json_out(invoke("stats", "--data", spec, "--split", "test", "--json"))
    assert figures["images"] == 72
    assert figures["per_class"] == {"cell": 805 + 71, "platelet": 69}


def test_stats_table_on_the_bundled_example() -> None:
    result = invoke("stats", "--data", examples_path(), "--format", "voc")
    assert result.exit_code == 0, result.output
    assert re.search(r"objects \(boxes \+ points\)\s*│\s*53\b", result.stdout)
    assert "Platelets" in result.stdout


def test_examples_prints_the_example_folder() -> None:
    result = invoke("examples")
    assert result.exit_code == 0
    assert Path(result.stdout.strip()) == examples_path()
    assert (examples_path() / "Annotations").is_dir()


def test_config_file_sets_defaults_and_flags_override_it(bccd: Path, tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "stats.yaml", {"data": str(bccd), "format": "voc", "split": "test", "json": True})
    assert json_out(invoke("stats", "--config", config))["images"] == 72
    assert json_out(invoke("stats", "--config", config, "--split", "train"))["images"] == 205


def test_config_file_with_an_unknown_option_is_one_error_line(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "stats.yaml", {"data": "x", "radius": 3})
    assert_one_line_error(invoke("stats", "--config", config), str(config), "radius")


def test_missing_data_folder_is_one_error_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    assert_one_line_error(invoke("stats", "--data", missing, "--format", "voc"), str(missing))


def test_malformed_xml_is_one_error_line_naming_the_file(bccd: Path, tmp_path: Path) -> None:
    (tmp_path / "Annotations").mkdir()
    for xml in sorted((bccd / "Annotations").glob("*.xml"))[:3]:
        shutil.copy(xml, tmp_path / "Annotations")
    broken = sorted((tmp_path / "Annotations").glob("*.xml"))[1]
    broken.write_text(broken.read_text()[:200])
    assert_one_line_error(invoke("stats", "--data", tmp_path, "--format", "voc"), str(broken))


def test_debug_shows_the_exception_instead(tmp_path: Path) -> None:
    result = invoke("--debug", "stats", "--data", tmp_path / "missing", "--format", "voc")
    assert result.exit_code == 1
    assert isinstance(result.exception, DataError)


def test_usage_errors_exit_with_2() -> None:
    assert invoke("stats", "--data", ".", "--format", "no-such-format").exit_code == 2
    assert invoke("stats").exit_code == 2  # --data missing
    assert invoke("evaluate", "--data", examples_path(), "--format", "voc").exit_code == 2  # no predictions


def test_convert_voc_to_coco_and_back(bccd: Path, tmp_path: Path) -> None:
    coco = tmp_path / "test.json"
    result = invoke("convert", "-d", bccd, "-f", "voc", "--split", "test", "--to", "coco", "--out", coco, "--json")
    summary = json_out(result)
    assert summary["dropped"] == {}
    back = tmp_path / "voc"
    result = invoke("convert", "--data", coco, "--format", "coco", "--to", "voc", "--out", back)
    assert result.exit_code == 0, result.output
    assert "dropped nothing" in result.stdout
    original = load_data(bccd, "voc", split="test")
    assert_same_annotations(original, read_dataset(back, "voc"), check_splits=False)


def _scored(dataset: object) -> object:
    return replace(dataset, images=[
        replace(image, cells=replace(image.cells, scores=np.ones(len(image.cells)))) for image in dataset.images
    ])


def test_convert_reports_what_the_target_format_drops(tmp_path: Path) -> None:
    predictions = tmp_path / "predictions.json"
    write_dataset(_scored(read_dataset(examples_path(), "voc")), predictions, "coco")
    result = invoke("convert", "-d", predictions, "-f", "coco", "--to", "voc", "-o", tmp_path / "voc", "--json")
    assert json_out(result)["dropped"] == {"scores": 53}
    assert [line for line in result.stderr.splitlines() if line.startswith("warning: ")] == [
        "warning: format voc cannot hold scores: dropped 53"
    ]


def test_evaluate_ground_truth_against_itself_is_perfect(bccd: Path, tmp_path: Path) -> None:
    predictions = tmp_path / "predictions.json"
    write_dataset(_scored(load_data(bccd, "voc", split="test")), predictions, "coco")
    config = write_yaml(tmp_path / "evaluate.yaml", {"pred-format": "coco", "data": str(bccd), "format": "voc"})
    report = tmp_path / "report"
    result = invoke("evaluate", "--config", config, "-p", predictions, "--split", "test", "--json", "--report", report)
    figures = json_out(result)
    assert figures["map50"] == pytest.approx(1.0)
    assert any(report.iterdir())

