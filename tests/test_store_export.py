"""``cytolens export --store``: a store's expert labels written as a dataset that cytolens' readers read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cytolens.cli.main import app
from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.transforms import boxes_to_points
from cytolens.errors import DataError
from cytolens.io.spec import load_data
from cytolens.store.export import file_ids
from cytolens.store.labels import LabelDraft
from helpers import assert_same_annotations
from labelled_store import LABELLED, labelled_store

EXTRA = (LabelDraft((5.0, 6.0), class_name="RBC"), LabelDraft((30.0, 31.0), (20.0, 21.0, 40.0, 41.0)))
"""A cell marked by its centre alone, and a box of unknown class, on the first labelled image."""


def invoke(*args: object) -> object:
    return CliRunner().invoke(app, [str(arg) for arg in args], env={"COLUMNS": "300"})


@pytest.fixture
def store(bccd, tmp_path):
    return labelled_store(bccd, tmp_path / "store", extra=EXTRA)


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo", "points"])
def test_export_reads_back_as_the_labels(store, tmp_path, fmt):
    store_file, root, original = store
    out = tmp_path / f"out-{fmt}"
    result = invoke("export", "--store", store_file, "--images", root, "--format", fmt, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["images"], summary["cells"]) == (3, sum(len(image.cells) for image in original) + 2)
    assert summary["splits"] == {}
    read = load_data(out, fmt)
    assert all(image.path.is_relative_to(out) for image in read.images)  # the images were placed inside the export
    if fmt == "points":  # every cell by its centre, the extra ones too
        assert summary["dropped"] == {}
        centres = boxes_to_points(original)
        for image, back in zip(centres.images, read.images, strict=True):
            expected = {(x, y, centres.classes[label]) for (x, y), label in zip(image.cells.centres.tolist(),
                                                                                 image.cells.labels, strict=True)}
            assert back.image_id == image.image_id
            if image.image_id == LABELLED[0]:
                expected |= {(5.0, 6.0, "RBC"), (30.0, 31.0, None)}
            names = [read.classes[label] if label >= 0 else None for label in back.cells.labels]
            assert {(x, y, name) for (x, y), name in zip(back.cells.centres.tolist(), names, strict=True)} == expected
        return
    # the boxes, without the cell marked by its centre or the box of unknown class
    assert summary["dropped"] == {"points": 1, "unclassified boxes": 1}
    assert_same_annotations(original, read, atol=1e-3, check_scores=False, check_splits=False)


def test_export_splits_and_replaces_whole(store, tmp_path):
    store_file, root, original = store
    out = tmp_path / "voc"
    args = ("export", "--store", store_file, "--images", root, "--format", "voc", "--out", out)
    result = invoke(*args, "--val-fraction", "0.34", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["splits"] == {"train": 2, "val": 1}
    splits = load_data(out, "voc").splits
    assert sorted(splits["train"] + splits["val"]) == list(LABELLED)
    refused = invoke(*args)
    assert refused.exit_code == 1 and "--exist-ok" in refused.output
    assert invoke(*args, "--exist-ok").exit_code == 0
    assert load_data(out, "voc").splits == {}  # replaced whole: no split lists of the earlier export left
    assert not [path for path in out.parent.iterdir() if path.name.startswith(".partial")]
    assert invoke(*args, "--exist-ok", "--val-fraction", "0.1").output.strip().endswith(
        "a validation fraction of 0.1 of its 3 labelled images leaves none for validation"
    )
    coco = invoke("export", "--store", store_file, "--images", root, "--format", "coco", "--out", tmp_path / "c",
                  "--val-fraction", "0.5")
    assert coco.exit_code == 2 and "coco holds no splits" in coco.output


def test_bad_stores_get_one_line(bccd, tmp_path: Path):
    root = tmp_path / "images"
    root.mkdir()
    missing = tmp_path / "missing.db"
    result = invoke("export", "--store", missing, "--images", root, "--format", "voc", "--out", tmp_path / "out")
    assert (result.exit_code, result.output) == (
        1, f"error: {missing}: no such annotation store (a missing store file is not created here)\n"
    )
    assert not missing.exists()
    store_file, root, _ = labelled_store(bccd, tmp_path / "empty", labelled=())
    result = invoke("export", "--store", store_file, "--images", root, "--format", "yolo", "--out", tmp_path / "out")
    assert (result.exit_code, result.output) == (
        1, f"error: {store_file}: holds no labelled images to export (labels are saved by cytolens review)\n"
    )
    assert not (tmp_path / "out").exists()
    usage = invoke("export", "--store", store_file, "--format", "yolo", "--out", tmp_path / "out")
    assert usage.exit_code == 2 and "needs --format, --out and --images" in usage.output
    assert invoke("export", "blood-cells", "--store", store_file).exit_code == 2


def test_stored_names_become_file_names(tmp_path):
    images = [AnnotatedImage(tmp_path / name, 8, 8, name) for name in ("a.jpg", "sub/b.png", "sub/deeper/c.tif")]
    named = file_ids(Dataset(["RBC"], images), "labels.db")
    assert [image.image_id for image in named] == ["a", "sub__b", "sub__deeper__c"]
    with pytest.raises(DataError, match=r"labels\.db: images a\.jpg and a\.png would be exported under one name a$"):
        file_ids(Dataset(["RBC"], [*images[:1], AnnotatedImage(tmp_path / "a.png", 8, 8, "a.png")]), "labels.db")
