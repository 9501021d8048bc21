from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import DataError
from cytolens.io import label_studio, read_dataset, write_dataset
from helpers import assert_same_annotations, write_image


def test_bccd_boxes_round_trip(bccd: Path, tmp_path: Path) -> None:
    dataset = read_dataset(bccd, "voc")
    write_dataset(dataset, tmp_path, "label-studio")
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert len(tasks) == 364 and all("annotations" in task and "predictions" not in task for task in tasks)
    assert Path(tasks[0]["data"]["image"]).is_absolute()  # outside the task folder
    back = read_dataset(tmp_path, "label-studio", classes=dataset.classes)
    assert_same_annotations(dataset, back, atol=1e-9, check_splits=False)


def test_bccd_predictions_round_trip(bccd: Path, tmp_path: Path) -> None:
    dataset = read_dataset(bccd, "voc")
    dataset.images = dataset.images[:20]
    rng = np.random.default_rng(0)
    dataset.images = [replace(image, cells=replace(image.cells, scores=rng.random(len(image.cells))))
                      for image in dataset.images]
    write_dataset(dataset, tmp_path / "preds.json", "label-studio")
    tasks = json.loads((tmp_path / "preds.json").read_text())
    prediction = tasks[0]["predictions"][0]
    assert prediction["model_version"].startswith("cytolens")
    assert prediction["score"] == pytest.approx(dataset.images[0].cells.scores.mean())
    back = read_dataset(tmp_path / "preds.json", "label-studio")
    assert_same_annotations(dataset, back, atol=1e-9, check_splits=False)


def test_task_layout_and_relative_image_path(tmp_path: Path) -> None:
    path = write_image(tmp_path / "images" / "a.png", 200, 100)
    image = AnnotatedImage(
        path, 200, 100, cells=Cells.concatenate([
            Cells(boxes=[[20, 10, 60, 30]], labels=[1]), Cells(centres=[[50, 25]], labels=[0])
        ]),
    )
    task = label_studio.to_task(image, ["RBC", "WBC"], relative_to=tmp_path)
    assert task["data"]["image"] == "images/a.png"
    box, point = task["annotations"][0]["result"]
    assert box["type"] == "rectanglelabels" and box["from_name"] == label_studio.BOX_CONTROL
    assert (box["original_width"], box["original_height"]) == (200, 100)
    assert box["value"] == {
        "x": 10.0, "y": 10.0, "width": 20.0, "height": 20.0, "rotation": 0, "rectanglelabels": ["WBC"]
    }
    assert point["type"] == "keypointlabels" and point["value"]["keypointlabels"] == ["RBC"]
    assert (point["value"]["x"], point["value"]["y"]) == (25.0, 25.0)
    assert "score" not in box
    ranked = label_studio.to_task(image, ["RBC", "WBC"], score=0.3)
    assert ranked["predictions"][0]["score"] == 0.3 and "annotations" not in ranked
    unscored = AnnotatedImage(path, 200, 100, cells=Cells(boxes=[], scores=[]))
    assert label_studio.to_task(unscored, [])["predictions"][0]["score"] is None
    with pytest.raises(ValueError, match="unclassified"):
        label_studio.to_task(AnnotatedImage(path, 200, 100, cells=Cells(centres=[[1, 1]], labels=[UNCLASSIFIED])), [])


def test_points_round_trip_and_unclassified_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_image(tmp_path / "a.png", 64, 48)
    image = AnnotatedImage(path, 64, 48, cells=Cells(
        centres=[[3.5, 4.5], [60, 2], [1, 1]], labels=[0, 1, UNCLASSIFIED], scores=[0.9, 0.8, 0.1]))
    with caplog.at_level(logging.WARNING):
        dropped = write_dataset(Dataset(["a", "b"], [image]), tmp_path, "label-studio")
    assert dropped == {"unclassified points": 1}
    back = read_dataset(tmp_path, "label-studio", classes=["a", "b"])
    kept = AnnotatedImage(path, 64, 48, cells=Cells(centres=[[3.5, 4.5], [60, 2]], labels=[0, 1], scores=[0.9, 0.8]))
    assert_same_annotations(Dataset(["a", "b"], [kept]), back, atol=1e-9, check_splits=False)


def _region(kind: str, value: dict, **extra: object) -> dict:
    return {"type": kind, "from_name": "x", "to_name": "image", "value": value,
            "original_width": 100, "original_height": 50, **extra}


def test_reads_label_studio_export(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_image(tmp_path / "images" / "cells.png", 100, 50)
    tasks = [
        {
            "id": 7,
            "data": {"image": "/data/upload/1/cells.png"},
            "annotations": [
                {"was_cancelled": True, "result": []},
                {"result": [
                    _region("rectanglelabels", {"x": 10, "y": 20, "width": 10, "height": 20, "rotation": 90,
                                                "rectanglelabels": ["WBC"]}),
                    _region("polygonlabels", {"points": [[10, 10], [30, 20], [20, 40]], "polygonlabels": ["RBC"]}),
                    _region("keypointlabels", {"x": 50, "y": 50, "width": 1, "keypointlabels": ["RBC"]}),
                    _region("choices", {"choices": ["blurry"]}),
                ]},
            ],
            "predictions": [{"result": [_region("keypointlabels", {"x": 1, "y": 1, "keypointlabels": ["X"]})]}],
        },
        {"data": {"image": "/data/local-files/?d=elsewhere/gone.png"},
         "predictions": [{"score": 0.5, "result": [
             _region("keypointlabels", {"x": 10, "y": 10, "keypointlabels": ["RBC"]}, score=0.25)]}]},
    ]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    with caplog.at_level(logging.WARNING):
        dataset = read_dataset(tmp_path / "export.json", "label-studio")
    cells, gone = dataset.images
    assert dataset.classes == ["WBC", "RBC"]
    assert cells.path == tmp_path / "images" / "cells.png" and cells.size == (100, 50)
    # rotated 90 degrees clockwise about its top-left corner (10, 10) px: 10x10 px wide, 10 px tall
    boxes, points = cells.cells.box_cells(), cells.cells.point_cells()
    np.testing.assert_allclose(boxes.boxes, [[0, 10, 10, 20], [10, 5, 30, 20]], atol=1e-9)
    np.testing.assert_array_equal(boxes.labels, [0, 1])
    np.testing.assert_allclose(points.centres, [[50, 25]])
    assert cells.cells.scores is None
    assert "skipped 1 choices regions" in caplog.text
    assert gone.path == tmp_path / "elsewhere" / "gone.png" and gone.size == (100, 50)
    np.testing.assert_allclose(gone.cells.centres, [[10, 5]])
    np.testing.assert_array_equal(gone.cells.scores, [0.25])


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[", "is not valid JSON at line 1"),
        ('"text"', "not a Label Studio task list"),
        ('[{"data": {}}]', "task \\? has no data.image"),
        ('[{"data": {"image": "missing.png"}}]', "image .*missing.png not found and its size is not stated"),
        ('[{"data": {"image": "a.png"}}, {"data": {"image": "sub/a.png"}}]', "several tasks name images a"),
        ('[{"data": {"image": "a.png"}, "annotations": [{"result": [{"type": "polygonlabels", '
         '"value": {"points": [], "polygonlabels": ["a"]}}]}]}]', "task 1 region 1: polygon 'points' is not a list"),
        ('[{"data": {"image": "a.png"}, "predictions": [{"result": [{"type": "keypointlabels", "score": "hi", '
         '"value": {"x": 1, "y": 2, "keypointlabels": ["a"]}}]}]}]', "region 1: score must be a number"),
    ],
)
def test_malformed_files_name_the_file(tmp_path: Path, content: str, problem: str) -> None:
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "sub" / "a.png")
    (tmp_path / "tasks.json").write_text(content)
    with pytest.raises(DataError, match=problem) as error:
        read_dataset(tmp_path, "label-studio")
    assert error.value.path == tmp_path / "tasks.json"


def test_unknown_class_is_an_error(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", 100, 50)
    result = [_region("keypointlabels", {"x": 1, "y": 1, "keypointlabels": ["X"]})]
    tasks = [{"data": {"image": "a.png"}, "annotations": [{"result": result}]}]
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    with pytest.raises(DataError, match="class 'X' is not in the class map"):
        read_dataset(tmp_path, "label-studio", classes=["RBC"])


def test_images_named_by_the_urls_label_studio_serves_them_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_image(tmp_path / "served" / "slide 1" / "a.png", 64, 48)
    image = AnnotatedImage(path, 64, 48, cells=Cells(boxes=[[2, 4, 20, 30]], labels=[0], scores=[0.8]))
    assert label_studio.local_files_url(path, tmp_path / "served") == "/data/local-files/?d=slide%201/a.png"
    with pytest.raises(DataError, match="lies outside the folder Label Studio serves local files from"):
        label_studio.local_files_url(path, tmp_path / "other")
    label_studio.write(Dataset(["RBC"], [image]), tmp_path / "given.json", served_from=tmp_path / "served")
    monkeypatch.setenv(label_studio.DOCUMENT_ROOT_VARIABLE, str(tmp_path / "served"))  # as Label Studio is run
    write_dataset(Dataset(["RBC"], [image]), tmp_path / "tasks", "label-studio")
    for written in (tmp_path / "given.json", tmp_path / "tasks" / "tasks.json"):
        (task,) = json.loads(written.read_text())
        assert task["data"]["image"] == "/data/local-files/?d=slide%201/a.png"
    back = read_dataset(tmp_path / "tasks", "label-studio")  # the URL read relative to the served folder
    assert_same_annotations(Dataset(["RBC"], [image]), back, atol=1e-9, check_splits=False)


def test_the_labelling_config_names_every_class_for_boxes_and_points() -> None:
    config = label_studio.labelling_config(["RBC", 'odd "name" & co'])
    assert '<RectangleLabels name="label" toName="image">' in config
    assert '<KeyPointLabels name="point" toName="image">' in config
    assert config.count('<Label value="RBC"/>') == 2 and config.count("<Label value='odd \"name\" &amp; co'/>") == 2
