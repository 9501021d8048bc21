"""Patches of a recipe's images as training samples, and class-balanced sampling of them.

:func:`recipe_patches` cuts the patches that the ``patches:`` section of a recipe describes
(:func:`~cytolens.data.patches.image_patches`: crops, points, boxes, clusters of touching cells) and
:func:`patch_geometry` states them for the model card. :class:`PatchDataset` serves each patch resampled to
the stage's input size: in training seen through a random view (rotation, centre shift, flip; optionally
colour and scale jitter), in validation as it is. Each image is decoded once and kept.
:func:`balanced_sampler` draws training patches with inverse class frequency, a multi-label patch counting
as its rarest type, so that rare types are seen as often as common ones
(:func:`~cytolens.training.class_balance.balanced_weights`).
"""

from __future__ import annotations

import statistics

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import WeightedRandomSampler

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.patches import Patch, View, crop_patch, image_patches, random_view
from cytolens.errors import DataError
from cytolens.io.images import read_image
from cytolens.models.card import PatchGeometry
from cytolens.training.augment import seed_from_torch
from cytolens.training.class_balance import balanced_weights
from cytolens.training.recipe import PatchSettings
from cytolens.training.stages import InputSize

SHIFT_FRACTION = 0.1
"""Largest training shift of a patch centre, as a fraction of its side, when the recipe gives no ``max_shift``."""

Sample = dict[str, torch.Tensor]
"""One sample: ``image`` (3, S, S) RGB float 0-1; ``target``: the class index (int64), or (C,) 0/1 floats
(multi-label)."""


def _mpp(image: AnnotatedImage) -> float:
    if image.mpp is None:
        raise DataError(image.path, "states no µm/px, which patches side_um needs (give side in pixels instead)")
    return image.mpp


def _side(image: AnnotatedImage, settings: PatchSettings) -> float | None:
    """The point-cell window side of ``image`` in its own pixels (``side``, or ``side_um`` at its µm/px)."""
    return settings.side if settings.side_um is None else settings.side_um / _mpp(image)


def recipe_patches(data: Dataset, settings: PatchSettings, train: bool) -> list[Patch]:
    """The patches of every image of ``data`` as the recipe's ``patches`` section cuts them.

    Args:
        data: The images (crop images with image labels, or images with point or box cells).
        settings: The recipe's ``patches`` section.
        train: Leave multi-cell patches out when the section asks for ``single_only``.

    Raises:
        DataError: Naming the image, if a cell marked by a point has no side to be cut with, ``side_um`` meets an
            image without µm/px, or a patch holds several types for a single-label model.

    """
    patches = []
    for index, image in enumerate(data.images):
        try:
            found = image_patches(index, image, _side(image, settings), settings.pad, settings.touching)
        except ValueError:
            raise DataError(image.path, "has cells marked by a point: give patches side or side_um") from None
        if not settings.multi_label and any(len(patch.labels) > 1 for patch in found):
            raise DataError(image.path, "holds a patch of several types: set patches multi_label: true")
        patches += [patch for patch in found if not (train and settings.single_only and patch.cells > 1)]
    return patches


def patch_geometry(data: Dataset, settings: PatchSettings) -> tuple[PatchGeometry, float | None]:
    """How the recipe cuts patches, for the model card, and the µm/px its pixel values are stated at.

    A side in µm is stated in pixels at the median µm/px of the training images (``None`` returned as the
    µm/px otherwise: the card then takes the training images' own). The shift of shifted test-time views is
    the training shift (``max_shift``, else a tenth of the side).
    """
    mpp = None
    side = settings.side
    if settings.side_um is not None:
        mpp = statistics.median(_mpp(image) for image in data.images)
        side = settings.side_um / mpp
    shift = settings.max_shift if settings.max_shift is not None else SHIFT_FRACTION * (side or 0.0)
    return PatchGeometry(side=side, pad=settings.pad, views=settings.views, shift=shift), mpp


class PatchDataset(TorchDataset):
    """The patches of a recipe's images as samples of the network's input size.

    Args:
        data: The images.
        settings: The recipe's ``patches`` section (how patches are cut and augmented).
        input_size: The input size of the current training stage (the side of the samples).
        train: Random views and jitter (and ``single_only``); otherwise each patch as it is.

    Attributes:
        patches: The patches, in order of their images.

    """

    def __init__(self, data: Dataset, settings: PatchSettings, input_size: InputSize, train: bool) -> None:
        self.images = list(data.images)
        self.num_classes = len(data.classes)
        self.settings = settings
        self.input_size = input_size
        self.train = train
        self.patches = recipe_patches(data, settings, train)
        self._pixels: dict[int, np.ndarray] = {}
        strength = settings.colour_jitter
        jitter = A.ColorJitter(0.2 * strength, 0.2 * strength, 0.2 * strength, min(0.5, 0.02 * strength), p=0.8)
        self.colour = A.Compose([jitter]) if train and strength else None

    def __len__(self) -> int:
        return len(self.patches)

    def pixels(self, index: int) -> np.ndarray:
        """The RGB pixels of image ``index`` (decoded on first use, then kept)."""
        if index not in self._pixels:
            self._pixels[index] = read_image(self.images[index].path)
        return self._pixels[index]

    def target(self, patch: Patch) -> torch.Tensor:
        """The training target of ``patch``: its class, or its 0/1 types (multi-label)."""
        if not self.settings.multi_label:
            return torch.tensor(patch.labels[0], dtype=torch.int64)
        target = torch.zeros(self.num_classes)
        target[list(patch.labels)] = 1.0
        return target

    def __getitem__(self, index: int) -> Sample:
        patch = self.patches[index]
        settings, side, view = self.settings, patch.side, View()
        if self.train:
            rng = np.random.default_rng(seed_from_torch())
            shift = settings.max_shift if settings.max_shift is not None else SHIFT_FRACTION * side
            view = random_view(rng, settings.max_angle, shift, settings.flip)
            if settings.scale_jitter:
                side *= rng.uniform(1 - settings.scale_jitter, 1 + settings.scale_jitter)
        pixels = crop_patch(self.pixels(patch.image), patch.centre, side, self.input_size.side, view)
        if self.colour is not None:
            self.colour.set_random_seed(seed_from_torch())
            pixels = self.colour(image=pixels)["image"]
        image = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float().div_(255)
        return {"image": image, "target": self.target(patch)}


def balanced_sampler(dataset: PatchDataset) -> WeightedRandomSampler:
    """Draws ``len(dataset)`` patches per epoch, with replacement, by their class-balanced weights
    (:func:`~cytolens.training.class_balance.balanced_weights`).
    """
    weights = balanced_weights([patch.labels for patch in dataset.patches])
    return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), len(weights), replacement=True)
