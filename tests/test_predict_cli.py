"""``cytolens predict`` with a tiny checkpoint on the bundled examples: every output written and parseable."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from pycocotools.coco import COCO
from typer.testing import CliRunner

from cytolens.cli.main import app
from cytolens.examples import path as examples_path
from cytolens.io.registry import read_dataset
from tiny_detector import CLASSES, tiny_detector

EXAMPLES = examples_path() / "JPEGImages"
STEMS = sorted(image.stem for image in EXAMPLES.glob("*.jpg"))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_detector(tmp_path_factory.mktemp("model") / "tiny.pt")


def predict(checkpoint: Path, out: Path, *inputs: object) -> object:
    """Run ``cytolens predict`` keeping every detection, so that the untrained model finds cells."""
    args = ["predict", *map(str, inputs), "--model", str(checkpoint), "--out", str(out), "--score-threshold", "0"]
    return CliRunner().invoke(app, args)


def leftovers(out: Path) -> list[Path]:
    """Temporary files of unfinished atomic writes."""
    return list(out.rglob("*.tmp"))


def test_predict_writes_every_output_and_they_parse(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = predict(checkpoint, out, EXAMPLES)
    assert result.exit_code == 0, result.output
    assert "For research use only, not for diagnosis." in result.stdout

    cells = pd.read_csv(out / "cells.csv")
    assert {"image", "x", "y", "class", "score", "x1", "y1", "x2", "y2"} <= set(cells.columns)
    assert sorted({Path(image).stem for image in cells["image"]}) == STEMS
    assert len(cells) > 0 and cells["score"].between(0, 1).all()

    counts = pd.read_csv(out / "counts.csv")
    assert sorted(Path(image).stem for image in counts["image"]) == STEMS
    assert (counts[CLASSES].sum(axis=1) == counts["total"]).all()
    assert counts["total"].sum() == cells["class"].isin(CLASSES).sum()

    coco = COCO(str(out / "predictions.coco.json"))
    assert len(coco.getImgIds()) == 3
    assert [category["name"] for category in coco.loadCats(coco.getCatIds())] == CLASSES
    results = json.loads((out / "coco_results.json").read_text())
    assert isinstance(results, list) and results
    assert {"image_id", "category_id", "bbox", "score"} <= set(results[0])
    assert {entry["image_id"] for entry in results} <= set(coco.getImgIds())

    for stem in STEMS:
        collection = json.loads((out / "geojson" / f"{stem}.geojson").read_text())
        assert collection["type"] == "FeatureCollection" and collection["features"]
        with Image.open(out / "overlays" / f"{stem}.png") as overlay, Image.open(EXAMPLES / f"{stem}.jpg") as image:
            assert overlay.format == "PNG" and overlay.size == image.size
    shutil.copytree(EXAMPLES, out / "geojson" / "images")  # the reader finds images beside the .geojson files
    back = read_dataset(out / "geojson", "geojson")
    assert sorted(image.image_id for image in back.images) == STEMS
    read_back = Counter(back.classes[label] for image in back.images for label in image.cells.labels)
    assert read_back == Counter(cells["class"][cells["class"].isin(CLASSES)])  # unclassified boxes are skipped
    assert not leftovers(out)


def test_a_bad_image_is_one_line_and_the_others_complete(checkpoint: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    shutil.copytree(EXAMPLES, images)
    bad = images / "BloodImage_00010.jpg"  # sorts between the good ones
    bad.write_bytes(b"\xff\xd8 this is not a JPEG image")
    out = tmp_path / "out"
    result = predict(checkpoint, out, images)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if str(bad) in line]
    assert len(errors) == 1 and errors[0].startswith("error: ")
    assert sorted(path.stem for path in (out / "overlays").glob("*.png")) == STEMS
    assert sorted(Path(image).stem for image in pd.read_csv(out / "counts.csv")["image"]) == STEMS


def test_existing_outputs_are_replaced_whole_with_exist_ok(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "overlays").mkdir(parents=True)
    (out / "cells.csv").write_text("stale\n")
    (out / "overlays" / f"{STEMS[0]}.png").write_bytes(b"stale")
    (out / "overlays" / f"{STEMS[1]}.png").write_bytes(b"stale")
    result = predict(checkpoint, out, "--exist-ok", EXAMPLES / f"{STEMS[0]}.jpg")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out / "cells.csv")) > 0
    with Image.open(out / "overlays" / f"{STEMS[0]}.png") as overlay:
        assert overlay.format == "PNG"
    assert [path.name for path in (out / "overlays").iterdir()] == [f"{STEMS[0]}.png"]  # nothing of the old run
    assert not leftovers(out)


def test_a_failed_write_leaves_the_previous_file_intact(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    assert predict(checkpoint, out, EXAMPLES / f"{STEMS[0]}.jpg").exit_code == 0
    overlay = out / "overlays" / f"{STEMS[0]}.png"
    before = overlay.read_bytes()

    def full_disk(self: Image.Image, handle: object, *args: object, **kwargs: object) -> None:
        handle.write(b"\x89PNG half")  # half written, then the disk fills
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    result = predict(checkpoint, out, "--exist-ok", EXAMPLES / f"{STEMS[0]}.jpg")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == "error: No space left on device"
    assert overlay.read_bytes() == before
    assert not leftovers(out)
