"""Chula RBC-12: the real counts, the half-pixel convention, points round trips, bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import DataError
from cytolens.io import chula as chula_format
from cytolens.io import read_dataset, write_dataset
from helpers import assert_same_annotations, write_image


def small_chula(root: Path, labels: dict[str, str]) -> Path:
    (root / "Label").mkdir(parents=True, exist_ok=True)
    for stem, text in labels.items():
        write_image(root / "Dataset" / f"{stem}.jpg", 64, 48)
        (root / "Label" / f"{stem}.txt").write_text(text)
    return root


def test_real_dataset_counts(chula: Path) -> None:
    dataset = read_dataset(chula, "chula")
    assert dataset.classes == chula_format.CLASSES
    assert len(dataset) == 523
    assert sum(len(image.cells) for image in dataset) == 18056
    assert sum(not len(image.cells) for image in dataset) == 1
    counts = dataset.object_counts()
    assert counts["normal cell"] == 4974 and counts["elliptocyte"] == 821 and "unclassified" not in counts
    assert dataset.licence == "MIT License"
    first = dataset.images[0]
    assert first.image_id == "2" and first.size == (640, 480)
    np.testing.assert_allclose(first.cells.centres[0], [27.5, 242.5])  # "27 242 0": the centre of pixel (27, 242)


def test_real_dataset_round_trips_through_chula_and_points(chula: Path, tmp_path: Path) -> None:
    dataset = read_dataset(chula, "chula")
    write_dataset(dataset, tmp_path / "chula", "chula")
    (tmp_path / "chula" / "Dataset").symlink_to(chula / "Dataset")
    assert_same_annotations(dataset, read_dataset(tmp_path / "chula", "chula"))
    assert (tmp_path / "chula" / "Label" / "2.txt").read_text() == (chula / "Label" / "2.txt").read_text()


def test_points_csv_to_chula_and_back(tmp_path: Path) -> None:
    root = small_chula(tmp_path / "c", {"1": "", "2": ""})
    csv_path = tmp_path / "c" / "p.csv"
    csv_path.write_text("image,x,y,class\nDataset/1.jpg,3.5,4.5,teardrop\nDataset/1.jpg,0.5,47.5,normal cell\n"
                        "Dataset/2.jpg,,,\n")
    dataset = read_dataset(csv_path, "points")
    write_dataset(dataset, root, "chula")
    back = read_dataset(root, "chula")
    assert (root / "Label" / "1.txt").read_text() == "3 4 7\n0 47 0\n"
    assert_same_annotations(dataset, back)


def test_write_drops_unclassified_points_with_a_warning(tmp_path: Path, caplog) -> None:
    cells = Cells(centres=[[1.2, 2.9], [3, 3]], labels=[0, UNCLASSIFIED])
    dataset = Dataset(["teardrop"], [AnnotatedImage(tmp_path / "5.jpg", 64, 48, cells=cells)])
    with caplog.at_level(logging.WARNING):
        dropped = write_dataset(dataset, tmp_path, "chula")
    assert dropped == {"unclassified points": 1} and "dropped 1" in caplog.text
    assert (tmp_path / "Label" / "5.txt").read_text() == "1 2 7\n"


def test_write_rejects_a_class_chula_does_not_have(tmp_path: Path) -> None:
    cells = Cells(centres=[[1, 2]], labels=[0])
    dataset = Dataset(["lymphocyte"], [AnnotatedImage(tmp_path / "5.jpg", 64, 48, cells=cells)])
    with pytest.raises(DataError, match="'lymphocyte' .* is not a Chula RBC-12 class"):
        chula_format.write(dataset, tmp_path)


def test_class_order_can_be_given(tmp_path: Path) -> None:
    root = small_chula(tmp_path, {"1": "1 2 7\n"})
    dataset = chula_format.read(root, classes=["teardrop", "normal cell"])
    assert dataset.classes == ["teardrop", "normal cell"] and dataset.images[0].cells.labels.tolist() == [0]
    with pytest.raises(DataError, match="'teardrop' is not in the class map"):
        chula_format.read(root, classes=["normal cell"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 2 0\n3 4 13\n", r"line 2: class must lie in \[0, 12\], not 13"),
        ("1 2 -1\n", "line 1: class must lie in"),
        ("1 2\n", "line 1: expected 'x y class'"),
        ("1 2.5 3\n", "line 1: y must be a whole number, not 2.5"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    root = small_chula(tmp_path, {"9": text})
    with pytest.raises(DataError, match=message) as error:
        chula_format.read(root)
    assert str(root / "Label" / "9.txt") in str(error.value)


def test_missing_folder_image_or_labels(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no Label/ inside"):
        chula_format.read(tmp_path)
    (tmp_path / "Label").mkdir()
    with pytest.raises(DataError, match="no .txt label files"):
        chula_format.read(tmp_path)
    (tmp_path / "Label" / "4.txt").write_text("1 2 0\n")
    with pytest.raises(DataError, match="no image 4.jpg"):
        chula_format.read(tmp_path)
