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
from cytolens.io import geojson, read_dataset, write_dataset
from cytolens.io.colors import class_color
from helpers import assert_same_annotations, write_image


def _round_trip(dataset: Dataset, images: Path, out: Path) -> Dataset:
    write_dataset(dataset, out, "geojson")
    (out / "images").symlink_to(images)
    return read_dataset(out, "geojson", classes=dataset.classes)


def test_bccd_boxes_round_trip(bccd: Path, tmp_path: Path) -> None:
    dataset = read_dataset(bccd, "voc")
    back = _round_trip(dataset, bccd / "JPEGImages", tmp_path / "out")
    assert len(back) == 364
    assert_same_annotations(dataset, back, atol=0, check_splits=False)


def test_bccd_predictions_keep_scores(bccd: Path, tmp_path: Path) -> None:
    dataset = read_dataset(bccd, "voc")
    dataset.images = dataset.images[:20]
    rng = np.random.default_rng(0)
    dataset.images = [replace(image, cells=replace(image.cells, scores=rng.random(len(image.cells))))
                      for image in dataset.images]
    back = _round_trip(dataset, bccd / "JPEGImages", tmp_path / "out")
    assert_same_annotations(dataset, back, atol=0, check_splits=False)


def test_chula_points_round_trip(chula: Path, tmp_path: Path) -> None:
    dataset = read_dataset(chula, "chula")
    back = _round_trip(dataset, chula / "Dataset", tmp_path / "out")
    assert sum(len(image.cells) for image in back) == sum(len(image.cells) for image in dataset)
    assert_same_annotations(dataset, back, atol=0, check_splits=False)


def _blank(path: Path) -> Path:
    return write_image(path, 40, 30)


def test_feature_collection_layout(tmp_path: Path) -> None:
    cells = Cells.concatenate([
        Cells(boxes=[[1, 2, 11, 12]], labels=[1], scores=[0.75]),
        Cells(centres=[[5.5, 6.5], [7, 8]], labels=[0, UNCLASSIFIED], scores=[0.5, 0.25]),
    ])
    probabilities = [[0.3, 0.7], [0.9, 0.1], [0.8, 0.2]]
    image = AnnotatedImage(tmp_path / "a.png", 40, 30, cells=replace(cells, probabilities=probabilities))
    collection = geojson.to_feature_collection(image, ["RBC", "WBC"])
    box, point, unclassified = collection["features"]
    assert collection["type"] == "FeatureCollection"
    assert box["geometry"] == {"type": "Polygon", "coordinates": [[[1, 2], [11, 2], [11, 12], [1, 12], [1, 2]]]}
    assert box["properties"]["objectType"] == "detection"
    assert box["properties"]["classification"] == {"name": "WBC", "color": list(class_color(1))}
    assert box["properties"]["measurements"] == {"score": 0.75, "p_RBC": 0.3, "p_WBC": 0.7}
    assert point["geometry"] == {"type": "Point", "coordinates": [5.5, 6.5]}
    assert "classification" not in unclassified["properties"]
    assert len({box["id"], point["id"], unclassified["id"]}) == 3
    json.dumps(collection)  # serialisable as it is
    with pytest.raises(ValueError, match="1 probabilities for 3 cells"):
        replace(cells, probabilities=[[0.3, 0.7]])


def test_unclassified_points_round_trip(tmp_path: Path) -> None:
    image = AnnotatedImage(
        _blank(tmp_path / "a.png"), 40, 30, cells=Cells(centres=[[1.25, 2.5], [30, 20]], labels=[UNCLASSIFIED, 0])
    )
    dataset = Dataset(["cell"], [image])
    write_dataset(dataset, tmp_path, "geojson")
    assert_same_annotations(dataset, read_dataset(tmp_path / "a.geojson", "geojson"), atol=0, check_splits=False)


def test_reads_qupath_02_list_of_features(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _blank(tmp_path / "images" / "slide.png")
    features = [
        {
            "type": "Feature", "id": "PathDetectionObject",
            "geometry": {"type": "Polygon", "coordinates": [[[3, 4], [9, 2], [12, 8], [5, 10], [3, 4]]]},
            "properties": {
                "classification": {"name": "Tumor", "colorRGB": -3670016}, "isLocked": False,
                "measurements": [{"name": "Area", "value": 40.0}, {"name": "score", "value": 0.9}],
            },
        },
        {
            "type": "Feature",
            "geometry": {"type": "MultiPoint", "coordinates": [[1, 1], [2.5, 3.5]]},
            "properties": {"classification": {"name": "Stroma"}, "measurements": []},
        },
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [5, 5]]}, "properties": {}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}},
    ]
    (tmp_path / "slide.geojson").write_text(json.dumps(features))
    with caplog.at_level(logging.WARNING):
        dataset = read_dataset(tmp_path, "geojson")
    image = dataset.images[0]
    assert dataset.classes == ["Tumor", "Stroma"]
    assert image.image_id == "slide" and image.size == (40, 30)
    boxes, points = image.cells.box_cells(), image.cells.point_cells()
    np.testing.assert_array_equal(boxes.boxes, [[3, 2, 12, 10]])
    np.testing.assert_array_equal(boxes.scores, [0.9])
    np.testing.assert_array_equal(points.centres, [[1, 1], [2.5, 3.5]])
    np.testing.assert_array_equal(points.labels, [1, 1])
    assert points.scores is None
    assert "skipped 1 LineString geometries" in caplog.text
    assert "skipped 1 polygons without a class" in caplog.text


def _point(name: str, score: float | None = None) -> dict:
    properties: dict = {"classification": {"name": name}}
    if score is not None:
        properties["measurements"] = {"score": score}
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [3, 4]}, "properties": properties}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "is not valid JSON at line 1 column 2"),
        ({"type": "Polygon", "coordinates": []}, "not GeoJSON"),
        ([_point("a", 0.5), _point("a")], "1 of 2 points have a score"),
        ([{"type": "Feature", "geometry": {"type": "Point", "coordinates": [3]}}], "feature 1: malformed position"),
        ([{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]},
           "properties": {"measurements": {"score": "high"}}}], "feature 1: score measurement must be a number"),
    ],
)
def test_malformed_files_name_the_file(tmp_path: Path, content: object, problem: str) -> None:
    path = tmp_path / "x.geojson"
    _blank(tmp_path / "x.png")
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(DataError, match=problem) as error:
        read_dataset(path, "geojson")
    assert error.value.path == path
    assert "\n" not in str(error.value)


def test_missing_image_and_unknown_class(tmp_path: Path) -> None:
    path = tmp_path / "x.geojson"
    path.write_text(json.dumps([_point("a")]))
    with pytest.raises(DataError, match="no image x"):
        read_dataset(path, "geojson")
    _blank(tmp_path / "x.png")
    with pytest.raises(DataError, match="class 'a' is not in the class map"):
        read_dataset(path, "geojson", classes=["b"])
    with pytest.raises(DataError, match="no .geojson files"):
        read_dataset(_blank(tmp_path / "empty" / "y.png").parent, "geojson")
