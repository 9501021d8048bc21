"""Torch datasets that turn annotated images into detector inputs and targets."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.io.images import read_image
from cytolens.training.augment import box_pipeline, seed_from_torch
from cytolens.training.stages import InputSize


@lru_cache(maxsize=4096)
def _cached_pixels(path: str) -> np.ndarray:
    return read_image(path)


class BoxDataset(TorchDataset):
    """Images with boxes as ``(image tensor 0-1 CHW, {"boxes", "labels"})`` pairs; labels are 1-based.

    Args:
        dataset: The annotated images.
        input_size: The input size of the current training stage (the longer image side after resizing).
        train: Whether to augment.

    """

    def __init__(self, dataset: Dataset, input_size: InputSize, train: bool) -> None:
        self.images: list[AnnotatedImage] = list(dataset.images)
        self.input_size = input_size
        self.train = train

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image = self.images[index]
        pixels, cells = _cached_pixels(str(image.path)), image.cells.box_cells()
        seed = seed_from_torch() if self.train else None
        out = box_pipeline(self.input_size.side, self.train, seed=seed)(
            image=pixels, bboxes=cells.boxes.astype(np.float32), labels=cells.labels.tolist()
        )
        boxes = torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4))
        labels = torch.as_tensor(np.asarray(out["labels"], dtype=np.int64).reshape(-1)) + 1
        tensor = torch.from_numpy(np.ascontiguousarray(out["image"])).permute(2, 0, 1).float().div_(255)
        return tensor, {"boxes": boxes, "labels": labels}


def collate(batch: list) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Keep images and targets as lists (detectors take images of different sizes)."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
