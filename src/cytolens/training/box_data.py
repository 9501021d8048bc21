"""Torch datasets that turn annotated images into detector inputs and targets."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.partial_labels import stained_mask
from cytolens.errors import CytolensError
from cytolens.io.images import read_image
from cytolens.io.spec import load_data
from cytolens.training.augment import box_pipeline, seed_from_torch
from cytolens.training.recipe import Recipe
from cytolens.training.stages import InputSize


@lru_cache(maxsize=4096)
def _cached_pixels(path: str) -> np.ndarray:
    return read_image(path)


def unlabelled_cells(pixels: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Pixels of the cells nobody boxed in a partially labelled image: stained, and in no box.

    Args:
        pixels: ``(H, W, 3)`` uint8 RGB image.
        boxes: ``(N, 4)`` xyxy boxes of its labelled cells.

    Returns:
        ``(H, W)`` uint8 mask, 1 on unlabelled cells. Holes in the stain up to half the median box area are
        filled, so that a red cell's pale centre counts as cell.

    """
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    max_hole = int(np.median(areas) / 2) if len(boxes) else 1000
    mask = stained_mask(pixels, max_hole=max(max_hole, 1000))
    for x0, y0, x1, y1 in np.round(boxes).astype(int):
        mask[max(y0, 0) : y1, max(x0, 0) : x1] = False
    return mask.astype(np.uint8)


class BoxDataset(TorchDataset):
    """Images with boxes as ``(image tensor 0-1 CHW, {"boxes", "labels"})`` pairs; labels are 1-based.

    Args:
        dataset: The annotated images.
        input_size: The input size of the current training stage (the longer image side after resizing).
        train: Whether to augment.
        ignore_unlabelled: The images label only some of their cells: targets also carry ``masks``, a
            ``(1, H, W)`` map of the unlabelled cells (:func:`unlabelled_cells`), which the detector leaves out
            of its background loss (:class:`~cytolens.models.detectors.PartialLabelFCOSHead`).

    """

    def __init__(self, dataset: Dataset, input_size: InputSize, train: bool, ignore_unlabelled: bool = False) -> None:
        self.images: list[AnnotatedImage] = list(dataset.images)
        self.input_size = input_size
        self.train = train
        self.ignore_unlabelled = ignore_unlabelled

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image = self.images[index]
        pixels, cells = _cached_pixels(str(image.path)), image.cells.box_cells()
        seed = seed_from_torch() if self.train else None
        inputs = {"image": pixels, "bboxes": cells.boxes.astype(np.float32), "labels": cells.labels.tolist()}
        if self.ignore_unlabelled:
            inputs["mask"] = unlabelled_cells(pixels, cells.boxes)
        out = box_pipeline(self.input_size.side, self.train, seed=seed)(**inputs)
        boxes = torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4))
        labels = torch.as_tensor(np.asarray(out["labels"], dtype=np.int64).reshape(-1)) + 1
        tensor = torch.from_numpy(np.ascontiguousarray(out["image"])).permute(2, 0, 1).float().div_(255)
        target = {"boxes": boxes, "labels": labels}
        if self.ignore_unlabelled:
            target["masks"] = torch.from_numpy(np.ascontiguousarray(out["mask"]))[None]
        return tensor, target


PARTIAL_LABEL_ARCHITECTURES = ("fcos",)
"""Box architectures whose loss leaves unlabelled cells out (the FCOS head in cytolens.models.detectors)."""


def check_partial_labels(recipe: Recipe, setting: str) -> None:
    """Refuse a boxes ``setting`` that needs unlabelled cells left out of the loss, if the architecture cannot.

    Raises:
        CytolensError: If the recipe's architecture is not one of :data:`PARTIAL_LABEL_ARCHITECTURES`.

    """
    if recipe.architecture not in PARTIAL_LABEL_ARCHITECTURES:
        raise CytolensError(
            f"boxes: {setting} needs an architecture whose loss leaves unlabelled cells out "
            f"({', '.join(PARTIAL_LABEL_ARCHITECTURES)}), not {recipe.architecture}"
        )


def partially_labelled(recipe: Recipe, classes: list[str]) -> Dataset:
    """The ``partial_data`` of a recipe's boxes section, without the images its ``data`` holds in any split.

    Args:
        recipe: The recipe (its ``boxes.partial_data``, ``partial_format`` and ``partial_split``).
        classes: The training classes, in order; the partial data's classes map onto them by name.

    Raises:
        CytolensError: If the recipe's architecture cannot leave unlabelled cells out of its loss.

    """
    check_partial_labels(recipe, "partial_data")
    settings = recipe.boxes
    known = {image.image_id for image in load_data(recipe.data, recipe.format).images}
    partial = load_data(settings.partial_data, settings.partial_format, settings.partial_split, classes=classes)
    return dataclasses.replace(partial, images=[image for image in partial.images if image.image_id not in known])


def collate(batch: list) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Keep images and targets as lists (detectors take images of different sizes)."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
