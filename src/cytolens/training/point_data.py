"""Torch datasets that turn point-annotated images into point-detector inputs and targets.

Training samples are random square crops (padded when the image is smaller) whose targets are built
from *all* the image's centres, so cells just outside a crop still shape the proximity near its edge;
the crop and its target maps then go through the same D4 view and the crop through colour jitter
(:func:`cytolens.training.augment.point_pipeline`). Validation samples are whole images with their
true centres. :func:`collate` pads a batch to a common size, a multiple of 32.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.partial_labels import REACH, known_pixels, stained_mask
from cytolens.data.transforms import boxes_to_points
from cytolens.io.images import read_image
from cytolens.io.spec import load_data
from cytolens.models.point_fcn import STRIDE
from cytolens.training.augment import hed_jitter, point_pipeline, seed_from_torch
from cytolens.training.proximity import IGNORE, class_target, nearest_centre, proximity_map
from cytolens.training.recipe import PointSettings
from cytolens.training.stages import InputSize

Sample = dict[str, object]
"""One sample: ``image`` (3, H, W) float 0-1, ``proximity`` (H, W), ``known`` (H, W) 0/1 (pixels that count in
the proximity loss), ``classes`` (H, W) int64, ``points`` (N, 2) and ``labels`` (N,) (validation only: the
true centres), ``size`` (H, W) before padding."""


@lru_cache(maxsize=1024)
def _pixels(path: str, scale: float) -> np.ndarray:
    """The RGB pixels of an image, resized by ``scale`` (cached: every epoch reads the same images)."""
    pixels = read_image(path)
    if scale == 1.0:
        return pixels
    return cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


@lru_cache(maxsize=1024)
def _stained(path: str, scale: float) -> np.ndarray:
    """The stained-object mask of an image (cached like its pixels)."""
    return stained_mask(_pixels(path, scale))


def _to_tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float().div_(255)


class PointDataset(TorchDataset):
    """Point-annotated images as samples with proximity and class targets.

    Args:
        dataset: Images with points (labels index the model's classes; unclassified train detection only).
        d: Proximity distance (pixels, after ``scale``); pixels within ``d`` of a centre also take its class.
        a: Proximity sharpness.
        input_size: The input size of the current training stage: the side of the square training crops
            (needed with ``train``).
        train: Random crops with augmentation; otherwise whole images.
        scale: Resize factor applied to the images and their points first (1: as they are).
        ignore_unlabelled: Leave the pixels of unlabelled cells out of the proximity loss (for images in
            which only some cells are labelled; see :mod:`cytolens.data.partial_labels`).
        stain_jitter: Strength of the haematoxylin-eosin jitter of training crops
            (:func:`~cytolens.training.augment.hed_jitter`; 0: none).

    Raises:
        ValueError: If ``train`` is asked for without ``input_size``.

    """

    def __init__(
        self,
        dataset: Dataset,
        d: float,
        a: float = 3.0,
        input_size: InputSize | None = None,
        train: bool = True,
        scale: float = 1.0,
        ignore_unlabelled: bool = False,
        stain_jitter: float = 0.0,
    ) -> None:
        if train and input_size is None:
            raise ValueError("training samples are crops: give their input_size")
        self.images: list[AnnotatedImage] = list(dataset.images)
        self.d = d
        self.a = a
        self.input_size = input_size
        self.train = train
        self.scale = scale
        self.ignore_unlabelled = ignore_unlabelled
        self.stain_jitter = stain_jitter
        self.pipeline = point_pipeline(train=True)  # D4 views and colour jitter of training crops

    def __len__(self) -> int:
        return len(self.images)

    def _crop(self, arrays: list[np.ndarray], points: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """The same random square of each array, of the stage's input size (zero-padded at the bottom right if
        smaller), points moved.
        """
        size = self.input_size.side
        height, width = arrays[0].shape[:2]
        top = int(torch.randint(0, max(height - size, 0) + 1, ()).item())
        left = int(torch.randint(0, max(width - size, 0) + 1, ()).item())
        windows = []
        for array in arrays:
            window = np.zeros((size, size, *array.shape[2:]), dtype=array.dtype)
            part = array[top : top + size, left : left + size]
            window[: part.shape[0], : part.shape[1]] = part
            windows.append(window)
        return windows, points - [left, top]

    def __getitem__(self, index: int) -> Sample:
        image = self.images[index]
        arrays = [_pixels(str(image.path), self.scale)]
        if self.ignore_unlabelled:
            arrays.append(_stained(str(image.path), self.scale))
        cells = image.cells.point_cells()
        points = cells.centres * self.scale
        if self.train:
            arrays, points = self._crop(arrays, points)
        pixels, shape = arrays[0], arrays[0].shape[:2]
        reach = REACH * self.d if self.ignore_unlabelled else self.d
        nearest = nearest_centre(points, shape, reach)  # one query for all three targets
        proximity = proximity_map(points, shape, self.d, self.a, nearest)
        classes = class_target(points, cells.labels, shape, self.d, nearest)
        if self.ignore_unlabelled:  # pixels that count in the proximity loss: all but unlabelled cells'
            known = known_pixels(arrays[1], nearest[0], reach)
        else:
            known = np.ones(shape, dtype=np.float32)
        sample: Sample = {"size": shape}
        if self.train:
            self.pipeline.set_random_seed(seed_from_torch())
            if self.stain_jitter:
                pixels = hed_jitter(pixels, self.stain_jitter, np.random.default_rng(seed_from_torch()))
            out = self.pipeline(
                image=pixels, mask=classes, masks=[proximity, known], keypoints=np.zeros((0, 2)), labels=[]
            )
            pixels, classes = out["image"], out["mask"].astype(np.int64)
            proximity, known = (np.asarray(m, dtype=np.float32) for m in out["masks"])
        else:
            sample["points"] = torch.as_tensor(points, dtype=torch.float32)
            sample["labels"] = torch.as_tensor(cells.labels)
        sample["image"] = _to_tensor(pixels)
        sample["proximity"] = torch.from_numpy(np.ascontiguousarray(proximity))
        sample["known"] = torch.from_numpy(np.ascontiguousarray(known))
        sample["classes"] = torch.from_numpy(np.ascontiguousarray(classes))
        return sample


class WithAuxiliary(TorchDataset):
    """Each target sample paired with a random auxiliary sample: items are ``(target, auxiliary)``."""

    def __init__(self, target: PointDataset, auxiliary: PointDataset) -> None:
        self.target = target
        self.auxiliary = auxiliary

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, index: int) -> tuple[Sample, Sample]:
        other = int(torch.randint(0, len(self.auxiliary), ()).item())
        return self.target[index], self.auxiliary[other]


def auxiliary_data(settings: PointSettings, classes: list[str]) -> Dataset:
    """The auxiliary data of a recipe's points section as points whose labels index ``classes`` (the target's).

    Boxes become their centres; only the ``aux_classes`` of the section are kept (all when unset);
    auxiliary classes that the target lacks become unclassified (they train detection only).
    """
    data = load_data(settings.aux_data, settings.aux_format, settings.aux_split)
    data = boxes_to_points(data, settings.aux_classes)
    return data.relabel(classes)


def _pad(tensor: torch.Tensor, height: int, width: int, value: float) -> torch.Tensor:
    return torch.nn.functional.pad(tensor, (0, width - tensor.shape[-1], 0, height - tensor.shape[-2]), value=value)


def _stack(samples: list[Sample]) -> dict[str, object]:
    """Pad samples to a common size (a multiple of 32) and stack them; points and labels stay lists."""
    height = max(s["image"].shape[-2] for s in samples)
    width = max(s["image"].shape[-1] for s in samples)
    height, width = -(-height // STRIDE) * STRIDE, -(-width // STRIDE) * STRIDE
    batch: dict[str, object] = {
        "image": torch.stack([_pad(s["image"], height, width, 0.0) for s in samples]),
        "proximity": torch.stack([_pad(s["proximity"], height, width, 0.0) for s in samples]),
        "known": torch.stack([_pad(s["known"], height, width, 1.0) for s in samples]),
        "classes": torch.stack([_pad(s["classes"], height, width, IGNORE) for s in samples]),
        "size": [s["size"] for s in samples],
    }
    if "points" in samples[0]:
        batch["points"] = [s["points"] for s in samples]
        batch["labels"] = [s["labels"] for s in samples]
    return batch


def collate(batch: list[Sample] | list[tuple[Sample, ...]]) -> tuple[dict[str, object], ...]:
    """Batches of samples: ``(target,)``, or ``(target, auxiliary)`` for :class:`WithAuxiliary` items."""
    if isinstance(batch[0], tuple):
        return tuple(_stack(list(part)) for part in zip(*batch, strict=True))
    return (_stack(batch),)
