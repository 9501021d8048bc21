"""``cytolens stats`` on crop folders: blank (near-uniform) crops and exact duplicates, by file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cytolens.cli.main import app
from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.stats import BLANK_STD, crop_checks, grey_std, pixel_digest

CRIC_CROPS = {
    "HSIL/8825.png": "duplicate of HSIL/8832",
    "HSIL/8832.png": "duplicate of HSIL/8825",
    "NILM/10034.png": "a cell (grey std 51.6)",
    "NILM/10092.png": "blank (grey std 4.40)",
    "ASC-H/39.png": "blank (grey std 0.73)",
}


def stats_json(*args: object) -> dict:
    result = CliRunner().invoke(app, ["stats", *(str(arg) for arg in args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def test_real_cric_crops_blank_and_duplicate(cric: Path, tmp_path: Path) -> None:
    for name in CRIC_CROPS:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(cric / name, tmp_path / name)
    figures = stats_json("--data", tmp_path, "--format", "folders")
    crops = figures["crops"]
    assert crops["blank_std"] == BLANK_STD == 8
    assert [(entry["image"], round(entry["grey_std"], 2)) for entry in crops["blank"]] == [
        ("ASC-H/39", 0.73), ("NILM/10092", 4.40)
    ]
    assert crops["blank"][0]["file"] == str(tmp_path / "ASC-H/39.png")
    assert [[entry["image"] for entry in group] for group in crops["duplicates"]] == [["HSIL/8825", "HSIL/8832"]]
    assert crops["per_class"] == {
        "ASC-H": {"crops": 1, "blank": 1, "duplicates": 0},
        "HSIL": {"crops": 2, "blank": 0, "duplicates": 2},
        "NILM": {"crops": 2, "blank": 1, "duplicates": 0},
    }
    lenient = stats_json("--data", tmp_path, "--format", "folders", "--blank-std", 1)["crops"]
    assert [entry["image"] for entry in lenient["blank"]] == ["ASC-H/39"]


def test_table_lists_blank_and_duplicate_files(cric: Path, tmp_path: Path) -> None:
    for name in CRIC_CROPS:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(cric / name, tmp_path / name)
    result = CliRunner().invoke(app, ["stats", "--data", str(tmp_path), "--format", "folders"])
    assert result.exit_code == 0, result.output
    assert "Blank crops (grey-level std below 8): 2" in result.stdout
    assert "Exact duplicates (same pixels): 1 group" in result.stdout
    for name in ("ASC-H/39", "NILM/10092", "HSIL/8825", "HSIL/8832"):
        assert name in result.stdout
    assert "NILM/10034" not in result.stdout


def test_synthetic_crops(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cell = np.zeros((40, 40, 3))
    cell[:, 20:] = 255  # half black, half white: grey std 127.5
    faint = np.clip(200 + rng.normal(0, 3, (40, 40, 1)).repeat(3, axis=2), 0, 255)  # background noise
    almost = cell.copy()
    almost[0, 0] = 1  # one pixel off: not a duplicate
    save(tmp_path / "a" / "cell.png", cell)
    save(tmp_path / "b" / "same-cell.bmp", cell)  # same pixels, another name, format and class
    save(tmp_path / "a" / "almost.png", almost)
    save(tmp_path / "b" / "faint.png", faint)
    crops = stats_json("--data", tmp_path, "--format", "folders")["crops"]
    assert [entry["image"] for entry in crops["blank"]] == ["b/faint"]
    assert [[(entry["image"], entry["class"]) for entry in group] for group in crops["duplicates"]] == [
        [("a/cell", "a"), ("b/same-cell", "b")]
    ]
    assert crops["per_class"] == {
        "a": {"crops": 2, "blank": 0, "duplicates": 1},
        "b": {"crops": 2, "blank": 1, "duplicates": 1},
    }


def test_grey_std_and_digest_by_hand() -> None:
    half = np.zeros((4, 4, 3), np.uint8)
    half[:, 2:] = 255
    assert grey_std(half) == pytest.approx(127.5)
    green = np.zeros((2, 2, 3), np.uint8)
    green[0, :, 1] = 100  # luma 0.587 * 100 = 58.7, rounded to 59: std 29.5
    assert grey_std(green) == pytest.approx(29.5)
    assert pixel_digest(half) == pixel_digest(half.copy())
    assert pixel_digest(half) != pixel_digest(half.reshape(2, 8, 3))  # same values, other shape


def test_crops_with_several_labels_count_in_each_class(tmp_path: Path) -> None:
    blank = np.full((8, 8, 3), 90, np.uint8)
    images = [AnnotatedImage(tmp_path / "one.png", 8, 8, image_labels=[0, 1]),
              AnnotatedImage(tmp_path / "two.png", 8, 8, image_labels=[1])]
    crops = crop_checks(Dataset(["x", "y"], images), [blank, blank])
    assert [entry["class"] for entry in crops["blank"]] == ["x+y", "y"]
    assert crops["per_class"] == {"x": {"crops": 1, "blank": 1, "duplicates": 1},
                                  "y": {"crops": 2, "blank": 2, "duplicates": 2}}


def test_datasets_of_objects_are_not_read(bccd: Path) -> None:
    assert "crops" not in stats_json("--data", bccd, "--format", "voc", "--split", "test")
