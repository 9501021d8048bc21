"""Point training data: boxes as centres, random crops with targets, validation images, batching, auxiliary data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cytolens import examples
from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.data.transforms import boxes_to_points
from cytolens.errors import CytolensError
from cytolens.inference.peaks import find_peaks
from cytolens.io.images import read_image
from cytolens.io.spec import load_data
from cytolens.training.augment import point_pipeline
from cytolens.training.point_data import PointDataset, WithAuxiliary, auxiliary_data, collate
from cytolens.training.recipe import PointSettings
from cytolens.training.stages import InputSize, Stage


def test_boxes_to_points_keeps_centres_classes_and_scores():
    boxes = Cells(boxes=[[0, 0, 10, 20], [10, 10, 20, 30], [30, 0, 40, 4]], labels=[0, 1, 1], scores=[0.9, 0.8, 0.7])
    points = Cells(centres=[[45.5, 35.5]], labels=[UNCLASSIFIED])  # unscored among scored boxes: scored 1
    image = AnnotatedImage("a.png", 50, 40, cells=Cells.concatenate([boxes, points]), image_labels=[1])
    data = Dataset(["WBC", "RBC"], [image], {"train": ["a"]}, "demo", "MIT")
    points = boxes_to_points(data)
    out = points.images[0]
    assert points.classes == ["WBC", "RBC"] and points.splits == {"train": ["a"]} and points.licence == "MIT"
    assert out.cells.boxes is None
    np.testing.assert_allclose(out.cells.centres, [[45.5, 35.5], [5, 10], [15, 20], [35, 2]])
    np.testing.assert_array_equal(out.cells.labels, [UNCLASSIFIED, 0, 1, 1])
    np.testing.assert_allclose(out.cells.scores, [1.0, 0.9, 0.8, 0.7])
    red = boxes_to_points(data, ["RBC"]).images[0]
    np.testing.assert_allclose(red.cells.centres, [[45.5, 35.5], [15, 20], [35, 2]])
    np.testing.assert_array_equal(red.cells.labels, [UNCLASSIFIED, 0, 0])
    assert red.image_labels == [0]
    with pytest.raises(CytolensError, match="no class 'Platelets'"):
        boxes_to_points(data, ["Platelets"])


@pytest.fixture
def chula_few(chula):
    data = load_data(chula, "chula")
    return Dataset(data.classes, data.images[:3], {}, data.name, data.licence)


def test_training_crops_carry_aligned_targets(chula_few):
    torch.manual_seed(0)
    dataset = PointDataset(chula_few, d=16.0, input_size=InputSize([], 128), train=True)
    dataset.pipeline = point_pipeline(train=True, colour=0.0)  # D4 views only, so pixels can be compared
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["image"].shape == (3, 128, 128) and sample["image"].dtype == torch.float32
        assert sample["proximity"].shape == sample["classes"].shape == (128, 128)
        assert 0.9 < sample["proximity"].max() <= 1.0
        assert set(sample["classes"].unique().tolist()) <= set(range(-1, 13))
        assert ((sample["classes"] >= 0) == (sample["proximity"] > 0)).float().mean() > 0.99
    # the same crop without the D4 view: the target's peaks sit on the image's labelled centres
    torch.manual_seed(1)
    plain = PointDataset(chula_few, d=16.0, input_size=InputSize([], 128), train=True)
    plain.pipeline = point_pipeline(train=False)  # no view, no colour
    sample = plain[0]
    torch.manual_seed(1)
    top = int(torch.randint(0, 480 - 128 + 1, ()).item())
    left = int(torch.randint(0, 640 - 128 + 1, ()).item())
    pixels = torch.from_numpy(read_image(chula_few.images[0].path)[top : top + 128, left : left + 128])
    pixels = pixels.permute(2, 0, 1).float() / 255
    torch.testing.assert_close(sample["image"], pixels)
    inside = chula_few.images[0].cells.centres - [left, top]
    inside = inside[(inside >= 0).all(axis=1) & (inside < 128).all(axis=1)]
    found = find_peaks(sample["proximity"].numpy(), 0.9, 3)
    assert len(found) == len(inside)


def test_small_images_are_padded(chula_few):
    dataset = PointDataset(chula_few, d=16.0, input_size=InputSize([], 512 + 64), train=True)
    dataset.pipeline = point_pipeline(train=True, colour=0.0)
    sample = dataset[0]
    assert sample["image"].shape == (3, 576, 576)
    assert sample["image"].sum(dim=0).eq(0).float().mean() > 0.1


def test_validation_samples_and_collate(chula_few):
    dataset = PointDataset(chula_few, d=16.0, train=False)
    sample = dataset[0]
    assert sample["image"].shape == (3, 480, 640) and sample["size"] == (480, 640)
    np.testing.assert_allclose(sample["points"].numpy(), chula_few.images[0].cells.centres, atol=1e-5)
    small = dict(sample, image=sample["image"][:, :100, :90], proximity=sample["proximity"][:100, :90],
                 classes=sample["classes"][:100, :90], size=(100, 90))
    (batch,) = collate([small, small])
    assert batch["image"].shape == (2, 3, 128, 96) and batch["classes"].shape == (2, 128, 96)
    assert (batch["classes"][:, 100:] == -1).all() and (batch["proximity"][:, :, 90:] == 0).all()
    assert len(batch["points"]) == 2 and batch["size"] == [(100, 90), (100, 90)]


def test_auxiliary_box_data_as_unclassified_centres(chula_few):
    settings = PointSettings(aux_data=str(examples.path()), aux_format="voc", aux_classes=["RBC"], aux_scale=0.5)
    aux = auxiliary_data(settings, chula_few.classes)
    assert aux.classes == chula_few.classes and len(aux) == 3
    assert all((image.cells.labels == UNCLASSIFIED).all() and len(image.cells) for image in aux.images)
    size = InputSize([Stage(0, 1), Stage(0, 1, max_size=96)], base=64)  # both datasets crop at the stage's size
    pairs = WithAuxiliary(
        PointDataset(chula_few, d=16.0, input_size=size), PointDataset(aux, d=16.0, input_size=size, scale=0.5)
    )
    size.enter(1)
    target, auxiliary = pairs[0]
    assert target["image"].shape == auxiliary["image"].shape == (3, 96, 96)
    assert (auxiliary["classes"] == -1).all()
    first, second = collate([pairs[0], pairs[1]])
    assert first["image"].shape == second["image"].shape == (2, 3, 96, 96)
