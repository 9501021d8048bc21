"""One predictor per task: how a network's outputs on a batch of images become results.

A predictor is given the network (or, for box models, a detector standing in for it such as
:class:`~cytolens.inference.onnx_boxes.OnnxFCOS`), the model card and the device; then, for each
:class:`Batch` of images (pixels with their paths, ids and µm/px), :meth:`Predictor.predict` returns one
:class:`~cytolens.results.result.Result` per image, its cells a :class:`~cytolens.data.cells.Cells` record,
and :meth:`Predictor.raw` returns the raw network outputs that Monte-Carlo uncertainty runs several times.
:class:`~cytolens.inference.model.CellModel` chooses the predictor by the card's task
(:func:`predictor_type`) and applies the score threshold to what it returns.

Each task registers its predictor with :func:`register_predictor`, as its architectures register with
:func:`~cytolens.models.registry.register_architecture` and its thresholds with
:func:`~cytolens.models.card.register_thresholds`, so that a new task adds a class, not a branch::

    @register_predictor("patches")
    class PatchPredictor(Predictor):
        def raw(self, pixels): ...
        def predict(self, batch): ...

Every predictor honours the batch size: the images of a batch (or their tiles, for large images) go
through the network together, at most as many per forward pass as the batch holds images.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from cytolens.data.cells import Cells
from cytolens.errors import ModelError
from cytolens.inference.boxes import BoxTiling, check_fit, detect_boxes, set_nms
from cytolens.inference.peaks import DEFAULT_TILE, point_maps, predict_points, tile_overlap
from cytolens.models.card import ModelCard
from cytolens.results.result import Result

Detector = Callable[[list[torch.Tensor]], list[dict[str, torch.Tensor]]]
"""Called like a torchvision detector in eval mode: RGB 0-1 ``(3, H, W)`` tensors in, detections out."""


@dataclass(frozen=True)
class Batch:
    """Images that go through a model together.

    Attributes:
        paths: Each image's file (``arrayN`` for an array input).
        pixels: Each image's ``(H, W, 3)`` uint8 RGB pixels.
        ids: Each image's key in the outputs (default: its file stem).

    """

    paths: Sequence[Path]
    pixels: Sequence[np.ndarray]
    ids: Sequence[str] | None = None

    def __len__(self) -> int:
        return len(self.pixels)

    def image_ids(self) -> list[str]:
        """Each image's id: as given, else its file stem."""
        return list(self.ids) if self.ids is not None else [Path(path).stem for path in self.paths]

    def result(self, index: int, cells: Cells, classes: Sequence[str]) -> Result:
        """The result of image ``index`` with ``cells``, carrying its pixels."""
        pixels = self.pixels[index]
        height, width = pixels.shape[:2]
        return Result(
            Path(self.paths[index]), width, height, self.image_ids()[index], cells=cells,
            classes=list(classes), pixels=pixels,
        )


class Predictor(ABC):
    """Turns a task's network outputs into results (the base of every registered predictor).

    Args:
        network: The torch model, in eval mode.
        card: Its model card (classes, thresholds, input configuration).
        device: Where it runs.
        detector: Runs instead of ``network`` where the task allows (box models on ONNX Runtime).

    """

    def __init__(self, network: nn.Module, card: ModelCard, device: torch.device, detector: Detector | None = None):
        self.network = network
        self.card = card
        self.device = device
        self.detector = detector

    def check_fit(self, path: str | Path, pixels: np.ndarray) -> None:  # noqa: B027 (a hook: most tasks fit any image)
        """Refuse, before it is batched, an image the model cannot see (by default every image fits).

        Raises:
            DataError: Naming ``path``.

        """

    @abstractmethod
    def raw(self, pixels: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """The raw network outputs for a batch of images, one mapping of arrays per image, in image pixels.

        These are what Monte-Carlo uncertainty collects over several stochastic passes; they do not depend on
        the score threshold.
        """

    @abstractmethod
    def predict(self, batch: Batch) -> list[Result]:
        """One result per image of ``batch``, with every cell decoded (the caller applies the score threshold)."""


_PREDICTORS: dict[str, type[Predictor]] = {}
PredictorType = TypeVar("PredictorType", bound=type[Predictor])


def register_predictor(task: str) -> Callable[[PredictorType], PredictorType]:
    """Decorator registering the predictor of ``task``."""

    def decorate(kind: PredictorType) -> PredictorType:
        if task in _PREDICTORS:
            raise ValueError(f"predictor of task {task!r} registered twice")
        _PREDICTORS[task] = kind
        return kind

    return decorate


def predictor_type(task: str) -> type[Predictor]:
    """The predictor of ``task``.

    Raises:
        ModelError: If no predictor is registered for it.

    """
    if task not in _PREDICTORS:
        raise ModelError(f"no predictor is registered for task {task!r} (known: {', '.join(_PREDICTORS)})")
    return _PREDICTORS[task]


@register_predictor("boxes")
class BoxPredictor(Predictor):
    """Box detectors: boxes from the detector, images larger than one tile tiled and merged
    (:mod:`cytolens.inference.boxes`; tiles from the card's ``input.tile_size`` and ``input.overlap``).
    """

    @property
    def tiling(self) -> BoxTiling | None:
        """How the model tiles images larger than one tile (``None``: it runs every image whole)."""
        return BoxTiling.of(self.network, self.card.input)

    def check_fit(self, path: str | Path, pixels: np.ndarray) -> None:
        """Refuse an image the detector would shrink too much or to nothing; for an image larger than one tile,
        its tiles are checked (see :func:`cytolens.inference.boxes.check_fit`).
        """
        height, width = pixels.shape[:2]
        check_fit(self.network, path, width, height, self.tiling)

    def raw(self, pixels: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Per image, the detections before the card's score threshold: ``boxes`` (N, 4) xyxy in image pixels,
        ``labels`` (N,) 0-based class indices, ``scores`` (N,) (see :func:`~cytolens.inference.boxes.detect_boxes`).
        """
        nms = self.card.thresholds.nms
        set_nms(self.network, nms)
        detector = self.detector or self.network
        return detect_boxes(detector, list(pixels), self.device, self.tiling, nms, per_pass=len(pixels))

    def predict(self, batch: Batch) -> list[Result]:
        """Each image's boxes as cells (centres at the box centres), highest score first within each tile."""
        return [
            batch.result(index, Cells(labels=found["labels"], scores=found["scores"], boxes=found["boxes"]),
                         self.card.classes)
            for index, found in enumerate(self.raw(batch.pixels))
        ]


@register_predictor("points")
class PointPredictor(Predictor):
    """Point models: peaks of the proximity map, classified by the class map at each peak, over tiles of
    ``input.tile_size`` pixels (default :data:`~cytolens.inference.peaks.DEFAULT_TILE`) overlapping by
    ``input.overlap`` (see :mod:`cytolens.inference.peaks`).
    """

    @property
    def tile_size(self) -> int:
        """Largest tile side (pixels)."""
        return self.card.input.tile_size or DEFAULT_TILE

    def raw(self, pixels: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Per image, the stitched maps: ``proximity`` (H, W) and class ``logits`` (C, H, W), float32."""
        overlap = tile_overlap(self.card.thresholds, self.tile_size, self.card.input.overlap)
        return point_maps(self.network, list(pixels), self.tile_size, overlap, self.device, per_pass=len(pixels))

    def predict(self, batch: Batch) -> list[Result]:
        """Each image's cells: centres, classes, scores (proximity at the peak) and class probabilities."""
        return predict_points(
            self.network, batch.pixels, self.card.classes, self.card.thresholds, tile_size=self.tile_size,
            overlap=self.card.input.overlap, device=self.device, per_pass=len(batch), paths=batch.paths,
            ids=batch.image_ids(),
        )


__all__ = [
    "Batch",
    "BoxPredictor",
    "Detector",
    "PointPredictor",
    "Predictor",
    "predictor_type",
    "register_predictor",
]
