from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from cytolens import examples
from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import CytolensError
from cytolens.io import read_dataset, write_dataset
from cytolens.io.convert import convert
from cytolens.io.spec import load_data
from helpers import assert_same_annotations, write_image


def test_boxes_convert_without_loss(bccd: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cytolens.io.registry"):
        dropped = convert(bccd, "voc", "coco", tmp_path / "bccd.json", split="test")
    assert dropped == {}
    assert not [record for record in caplog.records if record.name == "cytolens.io.registry"]
    original = load_data(bccd, "voc", split="test")
    assert_same_annotations(original, read_dataset(tmp_path / "bccd.json", "coco"), check_splits=False)


def test_points_into_voc_are_dropped_with_a_warning(
    chula: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n_points = sum(len(label.read_text().split()) // 3 for label in (chula / "Label").glob("*.txt"))
    with caplog.at_level(logging.WARNING):
        dropped = convert(chula, "chula", "voc", tmp_path)
    assert dropped == {"points": n_points}
    assert f"format voc cannot hold points: dropped {n_points}" in caplog.text
    assert len(list((tmp_path / "Annotations").glob("*.xml"))) == 523


def test_boxes_into_chula_and_unclassified_points_are_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    image = AnnotatedImage(
        write_image(tmp_path / "src" / "a.png"), 64, 48, cells=Cells.concatenate([
            Cells(boxes=[[1, 2, 3, 4], [5, 6, 7, 8]], labels=[0, 0]),
            Cells(centres=[[10.5, 11.5], [20, 20]], labels=[0, UNCLASSIFIED]),
        ]),
    )
    write_dataset(Dataset(["normal cell"], [image]), tmp_path / "src", "geojson")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"format": "geojson", "root": "src"}))
    with caplog.at_level(logging.WARNING):
        dropped = convert(spec, None, "chula", tmp_path / "out")
    assert dropped == {"boxes": 2, "unclassified points": 1}
    assert "cannot hold boxes: dropped 2" in caplog.text and "cannot hold unclassified points: dropped 1" in caplog.text
    assert (tmp_path / "out" / "Label" / "a.txt").read_text().split() == ["10", "11", "0"]


def test_read_only_and_unknown_formats(tmp_path: Path) -> None:
    with pytest.raises(CytolensError, match="can be read but not written"):
        convert(examples.path(), "voc", "masks", tmp_path)
    with pytest.raises(CytolensError, match="unknown format 'nope'"):
        convert(examples.path(), "voc", "nope", tmp_path)
