"""Ultralytics YOLO: real BCCD through YOLO, the data.yaml variants, the written layout, bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import DataError
from cytolens.io import read_dataset, write_dataset, yolo
from helpers import assert_same_annotations, write_image


def write_yaml(path: Path, content: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content))
    return path


def small_yolo(root: Path, lines: str = "1 0.5 0.5 0.25 0.5\n", **spec: object) -> Path:
    """``root/images/train/a.png`` (64x48) with ``lines`` as its labels, and a data.yaml."""
    write_image(root / "images" / "train" / "a.png", 64, 48)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text(lines)
    return write_yaml(root / "data.yaml", {"train": "images/train", "names": ["RBC", "WBC"], **spec})


def test_label_path_follows_the_ultralytics_rule() -> None:
    assert yolo.label_path(Path("/d/images/x/images/train/a.jpg")) == Path("/d/images/x/labels/train/a.txt")
    assert yolo.label_path(Path("/d/pics/a.jpg")) == Path("/d/pics/a.txt")


def test_bccd_through_yolo_keeps_boxes_and_splits(bccd: Path, tmp_path: Path) -> None:
    voc = read_dataset(bccd, "voc")
    write_dataset(voc, tmp_path, "yolo")
    spec = yaml.safe_load((tmp_path / "data.yaml").read_text())
    assert list(spec)[:3] == ["train", "val", "test"] and spec["names"] == {0: "WBC", 1: "RBC", 2: "Platelets"}
    placed = tmp_path / "images" / "train" / "BloodImage_00001.jpg"  # a hard link or a copy, never a symlink
    assert not placed.is_symlink() and placed.read_bytes() == (bccd / "JPEGImages" / placed.name).read_bytes()
    back = read_dataset(tmp_path, "yolo")
    assert len(back) == 364
    assert sum(len(image.cells) for image in back) == 4886
    assert back.classes == voc.classes
    assert_same_annotations(voc, back)


def test_read_converts_normalised_centres(tmp_path: Path) -> None:
    dataset = yolo.read(small_yolo(tmp_path, "1 0.5 0.5 0.25 0.5\n0 0.125 0.25 0.25 0.5\n"))
    image = dataset.images[0]
    assert (image.image_id, image.size) == ("a", (64, 48))
    np.testing.assert_allclose(image.cells.boxes, [[24, 12, 40, 36], [0, 0, 16, 24]])
    assert image.cells.labels.tolist() == [1, 0] and image.cells.scores is None
    assert dataset.splits == {"train": ["a"]}
    assert yolo.read(tmp_path, classes=["WBC", "RBC"]).images[0].cells.labels.tolist() == [0, 1]


def test_path_key_names_dict_list_files_and_missing_labels(tmp_path: Path) -> None:
    root = tmp_path / "set"
    small_yolo(root)
    write_image(root / "images" / "val" / "b.png", 32, 32)
    write_image(root / "extra" / "c.png", 32, 32)
    (root / "val.txt").write_text("./images/val/b.png\n\n")
    spec = {"path": "set", "train": ["images/train", "extra"], "val": "val.txt", "names": {0: "RBC", 1: "WBC"},
            "nc": 2, "license": "CC BY 4.0"}
    dataset = yolo.read(write_yaml(tmp_path / "data.yaml", spec))
    assert dataset.classes == ["RBC", "WBC"]
    assert dataset.splits == {"train": ["a", "c"], "val": ["b"]}
    counts = {image.image_id: len(image.cells) for image in dataset}
    assert counts == {"a": 1, "b": 0, "c": 0}


def test_scores_nested_ids_and_empty_images_round_trip(tmp_path: Path) -> None:
    write_image(tmp_path / "src" / "x.png", 40, 30)
    dataset = Dataset(
        ["RBC", "WBC"],
        [
            AnnotatedImage(tmp_path / "src" / "x.png", 40, 30, "slide1/x", cells=Cells(
                boxes=[[1.5, 2.25, 10, 20], [0, 0, 40, 30]], labels=[1, 0], scores=[0.875, 0.1])),
            AnnotatedImage(tmp_path / "src" / "x.png", 40, 30, "slide2/x", cells=Cells(boxes=[], scores=[])),
        ],
        {"val": ["slide1/x"], "test": ["slide2/x"]},
    )
    yolo.write(dataset, tmp_path / "out")
    assert (tmp_path / "out" / "labels" / "val" / "slide1" / "x.txt").read_text().split("\n")[0].endswith(" 0.875")
    assert_same_annotations(dataset, yolo.read(tmp_path / "out"))


def test_without_splits_train_and_val_name_every_image(tmp_path: Path) -> None:
    write_image(tmp_path / "x.png")
    cells = Cells(boxes=[[1, 2, 3, 4]], labels=[0])
    dataset = Dataset(["c"], [AnnotatedImage(tmp_path / "x.png", 64, 48, cells=cells)])
    yolo.write(dataset, tmp_path / "out")
    back = yolo.read(tmp_path / "out" / "data.yaml")
    assert back.splits == {"train": ["x"], "val": ["x"]}
    assert_same_annotations(dataset, back, check_splits=False)


def test_write_needs_the_image_file(tmp_path: Path) -> None:
    dataset = Dataset(["c"], [AnnotatedImage(tmp_path / "gone.png", 64, 48)])
    with pytest.raises(DataError, match="gone.png: image file not found"):
        yolo.write(dataset, tmp_path / "out")


def test_box_outside_is_clipped_and_empty_box_skipped_with_warnings(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        image = yolo.read(small_yolo(tmp_path, "0 0.95 0.5 0.2 0.5\n0 0.5 0.5 0 0.5\n")).images[0]
    np.testing.assert_allclose(image.cells.boxes, [[54.4, 12, 64, 36]])
    assert "clipped" in caplog.text and "zero or negative size: skipped" in caplog.text


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("0 0.5 0.5 0.2\n", "line 1: expected 'class cx cy w h'"),
        ("0 0.5 0.5 0.2 0.2 0.9\n0 0.5 0.5 0.2 0.2\n", "line 2: expected"),
        ("0 0.5 x 0.2 0.2\n", "line 1: cy must be a number, not 'x'"),
        ("2 0.5 0.5 0.2 0.2\n", r"line 1: class must lie in \[0, 1\], not 2"),
    ],
)
def test_malformed_label_lines_name_file_and_line(tmp_path: Path, lines: str, message: str) -> None:
    with pytest.raises(DataError, match=message) as error:
        yolo.read(small_yolo(tmp_path, lines))
    assert "a.txt" in str(error.value)


def test_bad_yaml_and_class_map(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.yaml not found"):
        yolo.read(tmp_path)
    (tmp_path / "data.yaml").write_text("names: [a\n")
    with pytest.raises(DataError, match="data.yaml is not valid YAML at line 2"):
        yolo.read(tmp_path)
    write_yaml(tmp_path / "data.yaml", {"train": "images/train"})
    with pytest.raises(DataError, match="no 'names'"):
        yolo.read(tmp_path)
    write_yaml(tmp_path / "data.yaml", {"train": "missing", "names": ["a"]})
    with pytest.raises(DataError, match="split 'train'"):
        yolo.read(tmp_path)
    write_yaml(tmp_path / "data.yaml", {"train": "missing", "names": {1: "a"}})
    with pytest.raises(DataError, match="keys must be the integers"):
        yolo.read(tmp_path)
    with pytest.raises(DataError, match="'WBC' is not in the class map"):
        yolo.read(small_yolo(tmp_path / "ok"), classes=["RBC"])


def test_reads_the_licence_of_the_dataset_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.png")
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (tmp_path / "LICENSE").write_text("MIT License\n\nCopyright (c) someone\n")
    (tmp_path / "data.yaml").write_text("train: images\nnames: [cell]\n")
    assert read_dataset(tmp_path / "data.yaml", "yolo").licence == "MIT License"


def test_one_warning_per_file_and_none_for_a_fraction_of_a_pixel(tmp_path: Path, caplog) -> None:
    labels = "0 0.5 0.999 0.2 0.01\n0 0.97 0.5 0.2 0.5\n0 0.02 0.5 0.2 0.5\n"  # 0.2 px out, then 3.2 px out twice
    with caplog.at_level(logging.WARNING):
        image = yolo.read(small_yolo(tmp_path, labels)).images[0]
    assert len(image.cells) == 3
    (line,) = [record.getMessage() for record in caplog.records]
    assert "2 boxes lie outside the 64x48 image by up to" in line and line.endswith("clipped")
