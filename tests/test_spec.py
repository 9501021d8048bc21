from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.data.splits import kfold_split, ratio_split
from cytolens.errors import CytolensError, DataError
from cytolens.io.spec import DatasetSpec, SplitSpec, load_data, load_spec, rename_classes, write_spec

IDS = [f"img{i:03d}" for i in range(103)]


def _spec(folder: Path, content: dict, name: str = "data.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(yaml.safe_dump(content, sort_keys=False))
    return folder / name


def test_ratio_split_partitions_deterministically() -> None:
    splits = ratio_split(reversed(IDS), {"train": 0.7, "val": 0.1, "test": 0.2}, seed=3)
    assert [len(ids) for ids in splits.values()] == [72, 10, 21]
    assert sorted(sum(splits.values(), [])) == IDS
    assert splits == ratio_split(IDS, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=3)  # order of input ignored
    assert splits != ratio_split(IDS, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=4)
    assert [len(ids) for ids in ratio_split(IDS, {"a": 7, "b": 3}).values()] == [72, 31]  # normalised
    for bad in (-1, 0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="finite positive"):
            ratio_split(IDS, {"a": bad, "b": 2})


def test_kfold_split_partitions_and_complements() -> None:
    splits = kfold_split(IDS, 5, seed=0)
    folds = [splits[f"fold{k}"] for k in range(5)]
    assert sorted(len(fold) for fold in folds) == [20, 20, 21, 21, 21]
    assert sorted(sum(folds, [])) == IDS
    for k, fold in enumerate(folds):
        assert sorted(splits[f"train{k}"] + fold) == IDS
    assert splits == kfold_split(IDS[::-1], 5, seed=0)
    with pytest.raises(ValueError, match="folds"):
        kfold_split(IDS[:3], 4)


def test_spec_with_relative_root_keeps_format_splits(bccd: Path, tmp_path: Path) -> None:
    root = os.path.relpath(bccd, tmp_path / "specs")
    spec_file = _spec(tmp_path / "specs", {"format": "voc", "root": root, "name": "blood"})
    assert load_spec(spec_file).root == bccd
    dataset = load_data(spec_file)
    assert dataset.name == "blood" and len(dataset) == 364
    assert set(dataset.splits) == {"train", "val", "trainval", "test"}
    test = load_data(spec_file, split="test")
    assert len(test) == len(dataset.splits["test"]) and test.splits == {}


def test_spec_lists_ratio_and_folds_override_format_splits(bccd: Path, tmp_path: Path) -> None:
    ids = sorted(image.image_id for image in load_data(bccd, "voc"))
    (tmp_path / "val.txt").write_text("\n".join(ids[:5]) + "\n\n")
    voc = {"format": "voc", "root": str(bccd)}
    spec = _spec(tmp_path, {**voc, "splits": {"lists": {"train": ids[5:9], "val": "val.txt"}}})
    assert load_data(spec).splits == {"train": ids[5:9], "val": ids[:5]}
    spec = _spec(tmp_path, {**voc, "splits": {"ratio": {"train": 0.8, "test": 0.2}, "seed": 1}})
    splits = load_data(spec).splits
    assert splits == ratio_split(ids, {"train": 0.8, "test": 0.2}, seed=1)
    assert sorted(splits["train"] + splits["test"]) == ids
    spec = _spec(tmp_path, {**voc, "splits": {"folds": 3}})
    dataset = load_data(spec, split="fold1")
    assert len(dataset) in (121, 122)
    assert sorted(load_data(spec).splits) == ["fold0", "fold1", "fold2", "train0", "train1", "train2"]


def test_split_errors(bccd: Path, tmp_path: Path) -> None:
    lists = {"train": ["nope", "BloodImage_00000"]}
    spec = _spec(tmp_path, {"format": "voc", "root": str(bccd), "splits": {"lists": lists}})
    with pytest.raises(DataError, match="split 'train' lists 1 ids not in the dataset: nope") as error:
        load_data(spec)
    assert error.value.path == spec
    with pytest.raises(CytolensError, match=r"unknown split 'dev' \(known: .*trainval"):
        load_data(bccd, "voc", split="dev")
    spec = _spec(tmp_path, {"format": "voc", "root": str(bccd), "splits": {"folds": 1000}})
    with pytest.raises(DataError, match="folds"):
        load_data(spec)


def test_fixed_class_order_and_unknown_class(bccd: Path) -> None:
    dataset = load_data(bccd, "voc", classes=["RBC", "WBC", "Platelets"])
    assert dataset.classes == ["RBC", "WBC", "Platelets"]
    with pytest.raises(DataError, match="class 'Platelets' is not in the class map") as error:
        load_data(bccd, "voc", classes=["RBC", "WBC"])
    assert error.value.path.suffix == ".xml"


def test_class_map_renames_and_merges(bccd: Path, tmp_path: Path) -> None:
    original = load_data(bccd, "voc").object_counts()
    spec = _spec(tmp_path, {"format": "voc", "root": str(bccd),
                            "classes": {"RBC": "cell", "WBC": "cell", "Platelets": "platelet"}})
    dataset = load_data(spec)
    assert dataset.classes == ["cell", "platelet"]
    assert dataset.object_counts() == {"cell": original["RBC"] + original["WBC"], "platelet": original["Platelets"]}
    missing = _spec(tmp_path, {"format": "voc", "root": str(bccd), "classes": {"RBC": "red", "WBC": "white"}}, "m.yaml")
    with pytest.raises(DataError, match="class 'Platelets' of the dataset is not in the class map") as error:
        load_data(missing)
    assert error.value.path == missing


def test_rename_classes_keeps_unclassified_points_and_merges_image_labels(tmp_path: Path) -> None:
    image = AnnotatedImage(
        tmp_path / "a.png", 10, 10, cells=Cells(centres=[[1, 1], [2, 2], [3, 3]], labels=[2, UNCLASSIFIED, 0]),
        image_labels=[0, 2], image_scores=np.array([0.5, 0.2, 0.3]),
    )
    renamed = rename_classes(Dataset(["a", "b", "c"], [image]), {"c": "x", "a": "y", "b": "x"}, "spec.yaml")
    assert renamed.classes == ["x", "y"]
    np.testing.assert_array_equal(renamed.images[0].cells.labels, [0, UNCLASSIFIED, 1])
    assert renamed.images[0].image_labels == [1, 0]
    np.testing.assert_allclose(renamed.images[0].image_scores, [0.5, 0.5])


def test_write_spec_round_trip(bccd: Path, tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "val.txt").write_text("BloodImage_00000\n")
    spec = DatasetSpec("voc", bccd, "b", {"RBC": "r", "WBC": "w", "Platelets": "p"},
                       SplitSpec(lists={"train": ["BloodImage_00001"], "val": tmp_path / "lists" / "val.txt"}))
    write_spec(tmp_path / "out" / "spec.yaml", spec)
    written = yaml.safe_load((tmp_path / "out" / "spec.yaml").read_text())
    assert not Path(written["root"]).is_absolute() and written["splits"]["lists"]["val"] == "../lists/val.txt"
    back = load_spec(tmp_path / "out" / "spec.yaml")
    assert back == DatasetSpec(**{**vars(spec), "source": tmp_path / "out" / "spec.yaml"})
    for splits in (SplitSpec(ratio={"train": 0.5, "test": 0.5}, seed=2), SplitSpec(folds=4, seed=1)):
        write_spec(tmp_path / "s.yml", DatasetSpec("voc", bccd, splits=splits))
        assert load_spec(tmp_path / "s.yml").splits == splits


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("format: voc\nroot: [", "dataset spec is not valid YAML at line 2"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("format: voc\n", "root is missing"),
        ("format: nope\nroot: .\n", "unknown format 'nope'"),
        ("format: voc\nroot: .\nsplit: {}\n", "unknown key 'split'"),
        ("names: [a]\ntrain: images/train\n", "unknown key 'names' .*a YOLO data.yaml\\? give --format yolo"),
        ("format: voc\nroot: .\nclasses: 3\n", "classes must be a list"),
        ("format: voc\nroot: .\nsplits: {folds: 3, ratio: {a: 1}}\n", "exactly one of lists, ratio, folds"),
        ("format: voc\nroot: .\nsplits: {folds: many}\n", "splits folds must be a number, not 'many'"),
    ],
)
def test_malformed_spec_names_the_file(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "spec.yaml").write_text(text)
    with pytest.raises(DataError, match=problem) as error:
        load_spec(tmp_path / "spec.yaml")
    assert error.value.path == tmp_path / "spec.yaml" and "\n" not in str(error.value)


def test_load_data_needs_a_format_or_a_spec(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_data(tmp_path / "missing.yaml")
    with pytest.raises(CytolensError, match="give its annotation format"):
        load_data(tmp_path)
    with pytest.raises(CytolensError, match="unknown format"):
        load_data(tmp_path, "nope")
