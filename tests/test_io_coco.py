"""COCO JSON: real BCCD through COCO, results lists, and malformed input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import DataError
from cytolens.io import coco, read_dataset, write_dataset
from helpers import assert_same_annotations, write_image


def write_json(path: Path, content: object) -> Path:
    path.write_text(json.dumps(content))
    return path


def one_image_coco(tmp_path: Path, annotations: list[dict], **extra: object) -> Path:
    write_image(tmp_path / "images" / "a.png", 64, 48)
    content = {
        "images": [{"id": 7, "file_name": "a.png", "width": 64, "height": 48}],
        "annotations": annotations,
        "categories": [{"id": 3, "name": "WBC"}, {"id": 1, "name": "RBC"}],
        **extra,
    }
    return write_json(tmp_path / "instances.json", content)


def test_bccd_through_coco_keeps_every_box(bccd: Path, tmp_path: Path) -> None:
    voc = read_dataset(bccd, "voc")
    write_dataset(voc, tmp_path, "coco")
    back = read_dataset(tmp_path / "annotations.json", "coco")
    assert len(back) == 364
    assert sum(len(image.cells) for image in back) == 4886
    assert back.classes == voc.classes
    assert back.licence == voc.licence
    assert all(image.path.is_file() for image in back)
    assert_same_annotations(voc, back, check_splits=False)
    assert len(COCO(str(tmp_path / "annotations.json")).getAnnIds()) == 4886


def test_read_orders_categories_by_id_and_converts_xywh(tmp_path: Path) -> None:
    path = one_image_coco(
        tmp_path,
        [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 5, 20, 10]},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0.5, 1.25, 2, 3]},
        ],
    )
    dataset = coco.read(path)
    assert dataset.classes == ["RBC", "WBC"]
    image = dataset.images[0]
    assert image.image_id == "a" and image.path == tmp_path / "images" / "a.png"
    np.testing.assert_allclose(image.cells.boxes, [[10, 5, 30, 15], [0.5, 1.25, 2.5, 4.25]])
    assert image.cells.labels.tolist() == [1, 0]
    assert image.cells.scores is None
    assert coco.read(path, classes=["WBC", "RBC", "other"]).images[0].cells.labels.tolist() == [0, 1]


def test_scores_and_ids_round_trip(tmp_path: Path) -> None:
    write_image(tmp_path / "img" / "x.png", 40, 30)
    dataset = Dataset(
        ["RBC", "WBC"],
        [
            AnnotatedImage(tmp_path / "img" / "x.png", 40, 30, "slide1/x",
                           cells=Cells(boxes=[[1.5, 2.25, 10, 20]], labels=[1], scores=[0.875])),
            AnnotatedImage(tmp_path / "img" / "x.png", 40, 30, "slide2/x", cells=Cells(boxes=[], scores=[])),
        ],
    )
    coco.write(dataset, tmp_path / "predictions.json")
    entries = json.loads((tmp_path / "predictions.json").read_text())["images"]
    assert entries[0]["file_name"] == "img/x.png" and entries[0][coco.ID_KEY] == "slide1/x"
    assert_same_annotations(dataset, coco.read(tmp_path / "predictions.json"))


def test_to_results_evaluates_perfectly_against_itself(bccd: Path) -> None:
    truth = read_dataset(bccd, "voc").subset("test")
    gt = COCO()
    gt.dataset = coco.to_coco_dict(truth)
    gt.createIndex()
    results = coco.to_results(truth, coco.image_numbers(truth))
    assert len(results) == sum(len(image.cells) for image in truth)
    assert {"image_id", "category_id", "bbox", "score"} <= set(results[0])
    evaluation = COCOeval(gt, gt.loadRes(results), "bbox")
    evaluation.params.maxDets = [1, 10, 100]
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[1] == pytest.approx(1.0)


def test_write_to_folder_or_suffixless_path(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    dataset = Dataset(["c"], [AnnotatedImage(tmp_path / "a.png", 64, 48)])
    coco.write(dataset, tmp_path / "out")
    assert (tmp_path / "out" / "annotations.json").is_file()
    assert coco.read(tmp_path / "out").images[0].path == tmp_path / "a.png"


def test_box_outside_is_clipped_and_empty_box_skipped_with_warnings(tmp_path: Path, caplog) -> None:
    path = one_image_coco(
        tmp_path,
        [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [50, 40, 30, 30]},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [5, 5, 0, 4]},
        ],
    )
    with caplog.at_level(logging.WARNING):
        image = coco.read(path).images[0]
    np.testing.assert_allclose(image.cells.boxes, [[50, 40, 64, 48]])
    assert "clipped" in caplog.text and "zero or negative size: skipped" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON at line 1 column 2"),
        ("[]", "results list"),
        ('{"annotations": []}', "no 'images' list"),
        ('{"images": [{"id": 1}], "categories": []}', "images entry 1: 'file_name' must be a file name, not None"),
        ('{"images": [], "annotations": {}}', "'annotations' is not a list"),
    ],
)
def test_malformed_files_name_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as error:
        coco.read(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        ({"id": 1, "image_id": 99, "category_id": 1, "bbox": [1, 1, 2, 2]}, "unknown image_id 99"),
        ({"id": 1, "image_id": 7, "category_id": 5, "bbox": [1, 1, 2, 2]}, "unknown category_id 5"),
        ({"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 1, 2]}, r"'bbox' is not \[x, y, w, h\]"),
        ({"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, "a", 2, 2]}, "'bbox' value must be a number, not 'a'"),
    ],
)
def test_bad_annotations(tmp_path: Path, annotation: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        coco.read(one_image_coco(tmp_path, [annotation]))


def test_missing_file_and_unknown_class_and_mixed_scores(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        coco.read(tmp_path / "missing.json")
    path = one_image_coco(tmp_path, [])
    with pytest.raises(DataError, match="'WBC' is not in the class map"):
        coco.read(path, classes=["RBC"])
    scored = {"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 1, 2, 2], "score": 0.5}
    plain = {"id": 2, "image_id": 7, "category_id": 1, "bbox": [1, 1, 2, 2]}
    with pytest.raises(DataError, match="some annotations have a 'score'"):
        coco.read(one_image_coco(tmp_path, [scored, plain]))
