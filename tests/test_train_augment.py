"""Seeded runs repeat their augmentations: training samples depend on torch's seed only."""

from __future__ import annotations

import torch

from cytolens.data.annotations import Dataset
from cytolens.io.spec import load_data
from cytolens.training.box_data import BoxDataset
from cytolens.training.point_data import PointDataset
from cytolens.training.stages import InputSize


def _samples(dataset: torch.utils.data.Dataset, seed: int) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    return [dataset[index][0] if isinstance(dataset, BoxDataset) else dataset[index]["image"] for index in range(2)]


def _same(one: list[torch.Tensor], other: list[torch.Tensor]) -> bool:
    return all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(one, other, strict=True))


def test_box_and_point_training_samples_repeat_with_the_seed(bccd, chula) -> None:
    boxes = load_data(bccd, "voc")
    points = load_data(chula, "chula")
    datasets = [
        BoxDataset(Dataset(boxes.classes, boxes.images[:2]), InputSize([], 256), train=True),
        PointDataset(Dataset(points.classes, points.images[:2]), d=16.0, input_size=InputSize([], 96)),
    ]
    for dataset in datasets:
        assert _same(_samples(dataset, 0), _samples(dataset, 0))
        assert not _same(_samples(dataset, 0), _samples(dataset, 1))
