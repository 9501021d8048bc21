"""Round trips between the box formats: read A -> write B -> read B keeps every annotation.

(The point formats' round trips, points CSV <-> Chula, are in test_io_chula and test_io_points_csv.)
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.io import capabilities, read_dataset, write_dataset
from helpers import assert_same_annotations, write_image

BOX_FORMATS = ("voc", "coco", "yolo")
READ_FROM = {"voc": "", "coco": "annotations.json", "yolo": "data.yaml"}


def generated(root: Path, scores: bool) -> Dataset:
    """Three images under ``root/JPEGImages``: fractional boxes, an empty image, boxes on the border."""
    sizes = {"a": (64, 48), "b": (32, 32), "c": (50, 40)}
    paths = {stem: write_image(root / "JPEGImages" / f"{stem}.png", *size) for stem, size in sizes.items()}
    boxes = {
        "a": ([[1.25, 2.5, 10.75, 20], [30, 10.5, 63.5, 47.25]], [0, 2]),
        "b": ([], []),
        "c": ([[0, 0, 50, 40], [5, 6, 7, 8], [49, 1, 50, 39]], [1, 1, 0]),
    }
    images = [
        AnnotatedImage(paths[stem], *sizes[stem], stem, cells=Cells(
            boxes=box, labels=labels, scores=[0.5 + 0.1 * i for i in range(len(labels))] if scores else None))
        for stem, (box, labels) in boxes.items()
    ]
    return Dataset(["RBC", "WBC", "Platelets"], images, {"train": ["a", "b"], "val": ["c"]})


def read_back(folder: Path, fmt: str) -> Dataset:
    return read_dataset(folder / READ_FROM[fmt], fmt)


@pytest.mark.parametrize(("source", "target"), list(itertools.permutations(BOX_FORMATS, 2)))
def test_box_formats_round_trip(tmp_path: Path, source: str, target: str) -> None:
    original = generated(tmp_path / "src", scores=False)
    write_dataset(original, tmp_path / "src", source)
    first = read_back(tmp_path / "src", source)
    assert_same_annotations(original, first, check_splits=source != "coco")
    write_dataset(first, tmp_path / "dst", target)
    second = read_back(tmp_path / "dst", target)
    assert_same_annotations(first, second, check_splits="coco" not in (source, target))
    if target != "voc":  # VOC keeps no class list: its classes come in order of appearance
        assert second.classes == first.classes


@pytest.mark.parametrize(("source", "target"), [("coco", "yolo"), ("yolo", "coco")])
def test_scores_survive_between_the_formats_holding_them(tmp_path: Path, source: str, target: str) -> None:
    assert capabilities(source).scores and capabilities(target).scores
    original = generated(tmp_path / "src", scores=True)
    write_dataset(original, tmp_path / "src", source)
    first = read_back(tmp_path / "src", source)
    write_dataset(first, tmp_path / "dst", target)
    assert_same_annotations(original, read_back(tmp_path / "dst", target), check_splits=False)
