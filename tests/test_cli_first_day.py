"""What a lab notices on its first day with ``cytolens predict`` (issue 10), on the bundled examples with the
bundled ``blood-cells`` model: thresholds per class and NMS at run time, image ids that keep the sub-folders,
flags shown as flags, ``--verbose``/``--quiet`` after the verb, rounded counts, napari CSVs carrying class and
score, Label Studio tasks naming images by URLs Label Studio serves.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cytolens.cli.main import VERBS, app
from cytolens.examples import path as examples_path
from cytolens.io import read_dataset
from cytolens.io.label_studio import DOCUMENT_ROOT_VARIABLE
from cytolens.results.thresholds import parse_score_threshold

EXAMPLES = examples_path() / "JPEGImages"
IMAGE = EXAMPLES / "BloodImage_00007.jpg"
CLASSES = ["WBC", "RBC", "Platelets"]
WIDE = {"COLUMNS": "300"}  # usage errors and help in Rich panels: wide enough not to wrap a line

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args: object, env: dict[str, str] | None = None) -> object:
    return CliRunner().invoke(app, [str(arg) for arg in args], env={**WIDE, **(env or {})})


def counts(out: Path) -> dict[str, int]:
    table = pd.read_csv(out / "counts.csv")
    return {name: int(table[name].sum()) for name in CLASSES}


@pytest.fixture
def slides(tmp_path: Path) -> Path:
    """Two fields of the same name on two slides: ``slides/slideA/field1.jpg``, ``slides/slideB/field1.jpg``."""
    for slide, example in (("slideA", "BloodImage_00007.jpg"), ("slideB", "BloodImage_00011.jpg")):
        (tmp_path / "slides" / slide).mkdir(parents=True)
        shutil.copy(EXAMPLES / example, tmp_path / "slides" / slide / "field1.jpg")
    return tmp_path / "slides"


@pytest.mark.parametrize("verb", [[], *([function.__name__] for function in VERBS)], ids=lambda verb: " ".join(verb))
def test_help_shows_flags_without_a_value_placeholder(verb: list[str]) -> None:
    result = invoke(*verb, "--help")
    assert result.exit_code == 0, result.output
    assert "--help" in result.output and "<bool>" not in result.output


def test_score_threshold_per_class_keeps_the_other_classes_at_the_model_s(tmp_path: Path) -> None:
    assert invoke("predict", IMAGE, "-o", tmp_path / "default", "--outputs", "counts").exit_code == 0
    result = invoke("predict", IMAGE, "-o", tmp_path / "rbc", "--outputs", "counts", "--score-threshold", "RBC=0.3")
    assert result.exit_code == 0, result.output
    default, lower = counts(tmp_path / "default"), counts(tmp_path / "rbc")
    assert default == {"WBC": 1, "RBC": 19, "Platelets": 1}  # at the model's per-class thresholds
    assert lower["RBC"] > default["RBC"] and (lower["WBC"], lower["Platelets"]) == (1, 1)
    result = invoke("predict", IMAGE, "-o", tmp_path / "one", "--outputs", "counts", "--score-threshold", "0.99")
    assert result.exit_code == 0 and sum(counts(tmp_path / "one").values()) == 0  # one number: every class


def test_iou_sets_the_nms_of_a_box_model(tmp_path: Path) -> None:
    result = invoke("predict", IMAGE, "-o", tmp_path / "out", "--outputs", "counts", "--iou", "0.9")
    assert result.exit_code == 0, result.output
    assert counts(tmp_path / "out")["WBC"] > 1  # the model's NMS (0.5) keeps one white cell; 0.9 keeps overlaps too


def test_an_unknown_class_or_iou_for_a_point_model_is_one_usage_error(tmp_path: Path) -> None:
    result = invoke("predict", IMAGE, "-o", tmp_path / "out", "--score-threshold", "RBC=0.4,Neutrophil=0.5")
    assert result.exit_code == 2
    assert "'Neutrophil' is not a class of the model (its classes: WBC, RBC, Platelets)" in result.output
    result = invoke("predict", IMAGE, "-o", tmp_path / "out", "-m", "rbc-morphology-points", "--iou", "0.5")
    assert result.exit_code == 2
    assert "sets the NMS of box models; rbc-morphology-points is a points model" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_parse_score_threshold() -> None:
    model = {"WBC": 0.5, "RBC": 0.55, "Platelets": 0.55}
    assert parse_score_threshold("RBC=0.4, WBC=0.6", CLASSES, model) == {"WBC": 0.6, "RBC": 0.4, "Platelets": 0.55}
    assert parse_score_threshold("RBC=0.4", CLASSES, 0.3) == {"WBC": 0.3, "RBC": 0.4, "Platelets": 0.3}
    assert parse_score_threshold("0.25", CLASSES, model) == 0.25
    for text, message in (("RBC:0.4", "is not a number"), ("RBC=1.5", "RBC: 1.5 is not between 0 and 1"),
                          ("=0.4", "must look like CLASS=SCORE"), ("0.4,WBC=0.5", "must look like CLASS=SCORE"),
                          ("nan", "is not between 0 and 1")):
        with pytest.raises(ValueError, match=message):
            parse_score_threshold(text, CLASSES, model)


def test_a_folder_of_folders_asks_for_r_and_r_keeps_the_sub_folders(slides: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke("predict", slides, "-o", out)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {slides}: holds no images itself, only sub-folders with images: add -r (--recursive; "
        "recursive=True in Python) to read them"
    ]
    outputs = "csv,coco,geojson,overlay,counts,napari,label-studio"
    result = invoke("predict", slides, "-r", "-o", out, "--outputs", outputs, "--label-studio-root", tmp_path)
    assert result.exit_code == 0, result.output
    ids = ["slideA/field1", "slideB/field1"]
    table = pd.read_csv(out / "counts.csv")
    assert table["image"].tolist() == ids
    cells = pd.read_csv(out / "cells.csv")
    assert sorted(set(cells["image"])) == ids
    coco = json.loads((out / "predictions.coco.json").read_text())
    assert [image["cytolens_id"] for image in coco["images"]] == ids
    for image_id in ids:
        assert (out / "overlays" / f"{image_id}.png").is_file() and (out / "geojson" / f"{image_id}.geojson").is_file()
        napari = pd.read_csv(out / "napari" / f"{image_id}.csv")  # napari reads class and score as point properties
        assert napari.columns.tolist() == ["index", "axis-0", "axis-1", "class", "score"]
        mine = cells[cells["image"] == image_id]
        assert napari["class"].tolist() == mine["class"].tolist() and napari["score"].tolist() == mine["score"].tolist()

    percentages = table[[f"{name} %" for name in CLASSES]]
    assert (percentages == percentages.round(1)).all().all() and (percentages.sum(axis=1) - 100).abs().max() < 0.2
    assert (table[CLASSES].sum(axis=1) == table["total"]).all()

    tasks = json.loads((out / "label-studio.json").read_text())
    assert [task["data"]["image"] for task in tasks] == [
        "/data/local-files/?d=slides/slideA/field1.jpg", "/data/local-files/?d=slides/slideB/field1.jpg"
    ]
    assert all(len(task["predictions"][0]["result"]) == (cells["image"] == task_id).sum()
               for task, task_id in zip(tasks, ids, strict=True))
    assert '<Label value="Platelets"/>' in (out / "label-studio.xml").read_text()


def test_a_folder_with_images_and_sub_folders_warns_once_unless_quiet(slides: Path, tmp_path: Path) -> None:
    shutil.copy(IMAGE, slides / "field0.jpg")
    result = invoke("predict", slides, "-o", tmp_path / "loud", "--outputs", "counts")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [f"warning: {slides}: the images in its sub-folders are left out; add -r (--recursive; "
                        "recursive=True in Python) to read them"]
    assert pd.read_csv(tmp_path / "loud" / "counts.csv")["image"].tolist() == ["field0"]
    result = invoke("predict", slides, "-o", tmp_path / "quiet", "--outputs", "counts", "-q")  # after the verb
    assert result.exit_code == 0 and "warning:" not in result.stderr
    result = invoke("predict", slides, "-o", tmp_path / "verbose", "--outputs", "counts", "--verbose")
    assert result.exit_code == 0
    assert "info: blood-cells: score threshold WBC 0.4, RBC 0.55, Platelets 0.6" in result.stderr.splitlines()


def test_label_studio_tasks_read_back_from_the_served_folder(
    slides: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    result = invoke("predict", slides / "slideA", "-o", out, "--outputs", "label-studio,csv",
                    env={DOCUMENT_ROOT_VARIABLE: str(slides)})  # the variable Label Studio itself reads
    assert result.exit_code == 0, result.output
    assert json.loads((out / "label-studio.json").read_text())[0]["data"]["image"] == (
        "/data/local-files/?d=slideA/field1.jpg"
    )
    monkeypatch.setenv(DOCUMENT_ROOT_VARIABLE, str(slides))
    (image,) = read_dataset(out / "label-studio.json", "label-studio").images
    assert image.path == slides / "slideA" / "field1.jpg" and len(image.cells) == len(pd.read_csv(out / "cells.csv"))


def test_an_image_outside_the_label_studio_folder_is_refused_before_predicting(slides: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    result = invoke("predict", slides, "-r", "-o", tmp_path / "out", "--outputs", "label-studio",
                    "--label-studio-root", other)
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {slides / 'slideA' / 'field1.jpg'}: lies outside the folder Label Studio serves")
    assert not (tmp_path / "out").exists()
