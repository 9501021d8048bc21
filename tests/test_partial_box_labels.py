"""Box training on partially labelled images: unlabelled cells are left out of the background loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import dataset_path
from cytolens.errors import CytolensError
from cytolens.io.images import read_image
from cytolens.io.spec import load_data
from cytolens.io.voc import read
from cytolens.models.registry import build_architecture
from cytolens.training.box_data import partially_labelled, unlabelled_cells
from cytolens.training.recipe import Recipe


@pytest.fixture
def bccd_image(bccd):
    image = next(image for image in read(bccd).images if image.image_id == "BloodImage_00001")
    return read_image(image.path), image.cells.boxes


def test_unlabelled_cells_lie_outside_every_box(bccd_image):
    pixels, boxes = bccd_image
    mask = unlabelled_cells(pixels, boxes)
    assert mask.shape == pixels.shape[:2] and mask.dtype == np.uint8
    for x0, y0, x1, y1 in np.round(boxes).astype(int):
        assert not mask[y0:y1, x0:x1].any()
    assert 0.05 < mask.mean() < 0.5  # BCCD boxes about half of the red cells: the rest is unlabelled stain


def _losses(model, image, target):
    torch.manual_seed(0)
    return {name: float(value.detach()) for name, value in model([image], [target]).items()}


def test_fcos_leaves_unlabelled_cells_out_of_the_background_loss():
    torch.manual_seed(0)
    model = build_architecture("fcos", 3, weights=None, min_size=96, max_size=128).train()
    image = torch.rand(3, 96, 128)
    boxes = torch.tensor([[10.0, 10.0, 40.0, 40.0]])
    labels = torch.tensor([2])
    plain = _losses(model, image, {"boxes": boxes, "labels": labels})
    nothing_ignored = _losses(
        model, image, {"boxes": boxes, "labels": labels, "masks": torch.zeros(1, 96, 128, dtype=torch.uint8)}
    )
    all_ignored = _losses(
        model, image, {"boxes": boxes, "labels": labels, "masks": torch.ones(1, 96, 128, dtype=torch.uint8)}
    )
    assert nothing_ignored == pytest.approx(plain)
    # every background location ignored: only the box's own locations remain in the class loss
    assert all_ignored["classification"] < plain["classification"]
    assert all_ignored["bbox_regression"] == pytest.approx(plain["bbox_regression"])


def test_partial_data_leaves_out_the_images_of_the_main_data(bccd, tmp_path):
    recipe = Recipe.from_dict(
        {
            "task": "boxes",
            "architecture": "fcos",
            "data": str(dataset_path("bccd-txl") / "data.yaml"),
            "format": "yolo",
            "boxes": {"partial_data": str(bccd), "partial_format": "voc", "partial_split": "trainval"},
        }
    )
    partial = partially_labelled(recipe, ["WBC", "RBC", "Platelets"])
    complete = {image.image_id for image in load_data(dataset_path("bccd-txl") / "data.yaml", "yolo").images}
    assert partial.images and not complete & {image.image_id for image in partial.images}
    assert len(partial.images) == len(load_data(bccd, "voc", "trainval").images) - len(
        complete & {image.image_id for image in load_data(bccd, "voc", "trainval").images}
    )


def test_partial_data_needs_an_architecture_that_ignores_unlabelled_cells(bccd):
    recipe = Recipe.from_dict(
        {
            "task": "boxes",
            "architecture": "faster-rcnn",
            "data": str(bccd),
            "format": "voc",
            "boxes": {"partial_data": str(bccd), "partial_format": "voc"},
        }
    )
    with pytest.raises(CytolensError, match="partial_data needs an architecture"):
        partially_labelled(recipe, ["WBC", "RBC", "Platelets"])
