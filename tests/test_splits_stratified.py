"""Stratified, seeded k-fold splits, the rarest label that stands for an item of several, and folds of real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.data.splits import rarest_labels, stratified_kfold_split
from cytolens.training.cross_validation import stratification_labels

LABELS = {f"img{i:03d}": 0 if i < 30 else 1 if i < 50 else 2 for i in range(60)}  # 30, 20 and 10 images


def test_stratified_folds_partition_the_ids_and_hold_each_label_in_proportion() -> None:
    splits = stratified_kfold_split(LABELS, 5, seed=0)
    held_out = [splits[f"fold{k}"] for k in range(5)]
    assert sorted(key for part in held_out for key in part) == sorted(LABELS)
    for k, part in enumerate(held_out):
        assert np.bincount([LABELS[key] for key in part]).tolist() == [6, 4, 2]
        assert sorted(splits[f"train{k}"] + part) == sorted(LABELS)


def test_stratified_folds_depend_on_the_seed_only() -> None:
    splits = stratified_kfold_split(LABELS, 5, seed=3)
    assert splits == stratified_kfold_split(dict(reversed(LABELS.items())), 5, seed=3)  # order of input ignored
    assert splits != stratified_kfold_split(LABELS, 5, seed=4)


def test_impossible_folds_are_refused() -> None:
    with pytest.raises(ValueError, match="need 2 <= folds <= 60"):
        stratified_kfold_split(LABELS, 61)
    with pytest.raises(ValueError, match="need folds <= 2"):
        stratified_kfold_split({"a": 0, "b": 0, "c": 1, "d": 1}, 3)
    rare = stratified_kfold_split({**LABELS, "odd": 3}, 5)  # a label rarer than the folds: in one fold, no warning
    assert sum("odd" in rare[f"fold{k}"] for k in range(5)) == 1


def test_rarest_labels_stand_for_items_of_several_labels() -> None:
    assert rarest_labels([[0], [0, 1], [2, 0, 1], [1, 0], []]).tolist() == [0, 1, 2, 1, -1]
    assert rarest_labels([[1, 0], [0], [1]]).tolist() == [0, 0, 1]  # a tie: the lower label


def test_images_are_stratified_by_their_image_labels_else_their_rarest_cell_type(tmp_path: Path) -> None:
    def image(name: str, labels: list[int], image_labels: list[int] | None = None) -> AnnotatedImage:
        cells = Cells(centres=np.zeros((len(labels), 2)), labels=np.array(labels, dtype=np.int64))
        return AnnotatedImage(tmp_path / f"{name}.png", 8, 8, cells=cells, image_labels=image_labels or [])

    images = [image("x", [0, 0, 2]), image("v", [0]), image("y", [1, 1, -1]), image("z", [], [1]), image("w", [])]
    assert stratification_labels(Dataset(["a", "b", "c"], images)) == {"x": 2, "v": 0, "y": 1, "z": 1, "w": -1}
