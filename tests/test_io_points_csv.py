"""Points CSV and napari export: real Chula through the CSV, round trips, malformed input."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import DataError
from cytolens.io import points_csv, read_dataset, write_dataset
from helpers import assert_same_annotations, write_image


def write_csv(path: Path, text: str) -> Path:
    write_image(path.parent / "a.png", 64, 48)
    path.write_text(text)
    return path


def test_chula_through_points_csv_keeps_every_point(chula: Path, tmp_path: Path) -> None:
    dataset = read_dataset(chula, "chula")
    write_dataset(dataset, tmp_path / "all.csv", "points")
    back = read_dataset(tmp_path / "all.csv", "points")
    assert len(back) == 523
    assert sum(len(image.cells) for image in back) == 18056
    assert sorted(back.classes) == sorted(dataset.classes)
    assert_same_annotations(dataset, back)


def test_read_relative_paths_unclassified_and_empty_images(tmp_path: Path) -> None:
    write_image(tmp_path / "sub" / "b.png", 20, 10)
    path = write_csv(tmp_path / "p.csv", "image,x,y,class\na.png,1.5,2.5,RBC\na.png,3,4,\nsub/b.png,,,\n")
    dataset = points_csv.read(path)
    assert dataset.classes == ["RBC"]
    a, b = dataset.images
    assert (a.image_id, a.size, b.image_id, b.size) == ("a", (64, 48), "b", (20, 10))
    np.testing.assert_allclose(a.cells.centres, [[1.5, 2.5], [3, 4]])
    assert a.cells.labels.tolist() == [0, UNCLASSIFIED]
    assert len(b.cells) == 0 and a.cells.scores is None


def test_scores_ids_and_unclassified_points_round_trip(tmp_path: Path) -> None:
    write_image(tmp_path / "imgs" / "x.png", 40, 30)
    dataset = Dataset(
        ["RBC", "WBC"],
        [
            AnnotatedImage(tmp_path / "imgs" / "x.png", 40, 30, "slide1/x", cells=Cells(
                centres=[[1.25, 2.5], [39.9, 0]], labels=[1, UNCLASSIFIED], scores=[0.875, 0.123456789])),
            AnnotatedImage(tmp_path / "imgs" / "x.png", 40, 30, "slide2/x", cells=Cells(scores=[])),
        ],
    )
    points_csv.write(dataset, tmp_path)
    header = (tmp_path / "points.csv").read_text().splitlines()[0]
    assert header == "image,x,y,class,score,image_id"
    assert_same_annotations(dataset, points_csv.read(tmp_path))


def test_write_napari_shifts_half_a_pixel_and_swaps_axes(tmp_path: Path) -> None:
    dataset = Dataset(["c"], [AnnotatedImage(tmp_path / "a.png", 64, 48, "s/a",
                                             cells=Cells(centres=[[10.5, 3.5], [0, 0]], labels=[0, UNCLASSIFIED]))])
    (path,) = points_csv.write_napari(dataset, tmp_path / "napari")
    assert path == tmp_path / "napari" / "s" / "a.csv"
    with path.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["index", "axis-0", "axis-1", "class"]
    assert [[float(value) for value in row[:3]] for row in rows[1:]] == [[0, 3.0, 10.0], [1, -0.5, -0.5]]
    assert [row[3] for row in rows[1:]] == ["c", ""]


def test_write_napari_boxes_by_their_centres_with_class_and_score(tmp_path: Path) -> None:
    cells = Cells(boxes=[[10, 20, 30, 60]], labels=[1], scores=[0.75])
    (path,) = points_csv.write_napari(Dataset(["a", "b"], [AnnotatedImage(tmp_path / "a.png", 64, 48, cells=cells)]),
                                      tmp_path)
    with path.open() as handle:
        rows = list(csv.reader(handle))
    assert rows == [["index", "axis-0", "axis-1", "class", "score"], ["0", "39.5", "19.5", "b", "0.75"]]


def test_point_outside_the_image_is_moved_with_a_warning(tmp_path: Path, caplog) -> None:
    path = write_csv(tmp_path / "p.csv", "image,x,y,class\na.png,70,-1,RBC\n")
    with caplog.at_level(logging.WARNING):
        image = points_csv.read(path).images[0]
    np.testing.assert_allclose(image.cells.centres, [[64, 0]])
    assert "1 point(s) outside the 64x48 image" in caplog.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image,x,class\na.png,1,RBC\n", "header lacks column"),
        ("image,x,y,class\na.png,1,z,RBC\n", "line 2: y must be a number, not 'z'"),
        ("image,x,y,class\na.png,1,2,RBC,9\n", "line 2: wrong number of fields"),
        ("image,x,y,class\n,1,2,RBC\n", "line 2: empty image"),
        ("image,x,y,class,score\na.png,1,2,RBC,\n", "line 2: score must be a number, not ''"),
        ("image,x,y,class\nmissing.png,1,2,RBC\n", "missing.png: image file not found"),
        ("image,x,y,class\n", "holds no rows"),
    ],
)
def test_malformed_csv(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        points_csv.read(write_csv(tmp_path / "p.csv", text))


def test_missing_file_and_class_not_in_the_map(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="points CSV file not found"):
        points_csv.read(tmp_path / "none.csv")
    path = write_csv(tmp_path / "p.csv", "image,x,y,class\na.png,1,2,RBC\n")
    with pytest.raises(DataError, match="'RBC' is not in the class map") as error:
        points_csv.read(path, classes=["WBC"])
    assert error.value.path == path and "line 2" in str(error.value)
