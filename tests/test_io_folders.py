"""Class-folder crops: the real erythrocytesIDB and CRIC counts, writing by copying, bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import DataError
from cytolens.io import folders, read_dataset, write_dataset
from helpers import assert_same_annotations, write_image


def test_erythrocytesidb_counts(erythrocytesidb: Path) -> None:
    dataset = read_dataset(erythrocytesidb, "folders")
    assert len(dataset) == 626
    assert dataset.classes == ["circular", "elongated", "other"]
    assert dataset.images[0].image_id == "circular/c0001" and dataset.images[0].size == (80, 80)
    assert all(len(image.image_labels) == 1 and not len(image.cells) for image in dataset)


def test_cric_counts_and_given_class_order(cric: Path) -> None:
    order = ["NILM", "ASC-US", "ASC-H", "LSIL", "HSIL", "SCC"]
    dataset = read_dataset(cric, "folders", classes=order)
    assert len(dataset) == 2121
    assert dataset.classes == order
    per_class = {name: 0 for name in order}
    for image in dataset:
        per_class[order[image.image_labels[0]]] += 1
    assert per_class == {"NILM": 902, "ASC-US": 126, "ASC-H": 341, "LSIL": 388, "HSIL": 321, "SCC": 43}


def test_write_copies_into_class_folders_and_reads_back(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_image(tmp_path / "src" / "x" / f"{name}.png", 16, 8)
    dataset = folders.read(tmp_path / "src")
    dataset.classes.append("empty")
    folders.write(dataset, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "x").iterdir()) == ["a.png", "b.png"]
    assert (tmp_path / "out" / "empty").is_dir()
    back = folders.read(tmp_path / "out")
    assert back.classes == ["empty", "x"]
    assert_same_annotations(dataset, back)
    folders.write(back, tmp_path / "out")  # writing a folder onto itself leaves it intact
    assert_same_annotations(dataset, folders.read(tmp_path / "out"))


def test_write_multi_label_unlabelled_and_boxes(tmp_path: Path, caplog) -> None:
    write_image(tmp_path / "c.png")
    dataset = Dataset(
        ["p", "q"],
        [
            AnnotatedImage(tmp_path / "c.png", 64, 48, "slide/c", image_labels=[0, 1]),
            AnnotatedImage(tmp_path / "c.png", 64, 48, "other", cells=Cells(boxes=[[1, 1, 5, 5]], labels=[0])),
        ],
    )
    with caplog.at_level(logging.WARNING):
        dropped = write_dataset(dataset, tmp_path / "out", "folders")
    assert dropped == {"boxes": 1}
    assert "1 image(s) without an image label" in caplog.text
    assert (tmp_path / "out" / "p" / "c.png").is_file() and (tmp_path / "out" / "q" / "c.png").is_file()


def test_write_refuses_two_images_with_one_name(tmp_path: Path) -> None:
    write_image(tmp_path / "c.png")
    image = AnnotatedImage(tmp_path / "c.png", 64, 48, "s1/c", image_labels=[0])
    twin = AnnotatedImage(tmp_path / "c.png", 64, 48, "s2/c", image_labels=[0])
    with pytest.raises(DataError, match="'s1/c' and 's2/c' share this name"):
        folders.write(Dataset(["p"], [image, twin]), tmp_path / "out")
    with pytest.raises(DataError, match="gone.png: image file not found"):
        folders.write(Dataset(["p"], [AnnotatedImage(tmp_path / "gone.png", 4, 4, image_labels=[0])]), tmp_path / "o")


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="class-folder dataset not found"):
        folders.read(tmp_path / "nowhere")
    with pytest.raises(DataError, match="holds no class folders"):
        folders.read(tmp_path)
    write_image(tmp_path / "x" / "a.png")
    with pytest.raises(DataError, match="'x' is not in the class map"):
        folders.read(tmp_path, classes=["y"])
    (tmp_path / "x" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.png: cannot decode image"):
        folders.read(tmp_path)
