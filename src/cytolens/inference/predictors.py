"""One predictor per task: how a network's outputs on a batch of images become results.

A predictor is given the network (or, for box models, a detector standing in for it such as
:class:`~cytolens.inference.onnx_boxes.OnnxFCOS`), the model card and the device; then, for each
:class:`Batch` of images (pixels with their paths, ids and µm/px), :meth:`Predictor.predict` returns one
:class:`~cytolens.results.result.Result` per image, its cells a :class:`~cytolens.data.cells.Cells` record,
and :meth:`Predictor.raw` returns the raw network outputs. Monte-Carlo dropout passes
(:mod:`cytolens.inference.mc_dropout`) call :meth:`Predictor.predict` again with the heads' dropout on, so that
every pass is decoded as ordinary prediction is.
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
through the network together, at most as many per forward pass as the batch holds images (a patch classifier's
test-time views of them included).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from cytolens.data.cells import Cells
from cytolens.data.patches import View, crop_patch, test_time_views
from cytolens.errors import ModelError
from cytolens.inference.boxes import BoxTiling, check_fit, detect_boxes, set_nms
from cytolens.inference.peaks import DEFAULT_TILE, point_maps, predict_points, tile_overlap
from cytolens.models.card import ModelCard, PatchGeometry, PatchThresholds
from cytolens.models.task_registry import TaskRegistry
from cytolens.results.result import Result

PATCHES_PER_PASS = 64
"""Patch windows (each test-time view counted) per forward pass when :meth:`PatchPredictor.classify` is not told."""

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

        They do not depend on the score threshold.
        """

    @abstractmethod
    def predict(self, batch: Batch) -> list[Result]:
        """One result per image of ``batch``, with every cell decoded (the caller applies the score threshold)."""


_PREDICTORS = TaskRegistry[type[Predictor]]("predictor")
PredictorType = TypeVar("PredictorType", bound=type[Predictor])


def register_predictor(task: str) -> Callable[[PredictorType], PredictorType]:
    """Decorator registering the predictor of ``task``."""
    return _PREDICTORS.register(task)


def predictor_type(task: str) -> type[Predictor]:
    """The predictor of ``task``.

    Raises:
        ModelError: If no predictor is registered for it.

    """
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
    ``input.overlap`` (see :mod:`cytolens.inference.peaks`). With the card's ``input.flips``, each tile's maps are
    averaged over its mirrored views (:data:`~cytolens.inference.peaks.FLIPS`; four times the work).
    """

    @property
    def flips(self) -> bool:
        """Test-time flips (off: the maps of the tiles as they are)."""
        return self.card.input.flips

    @property
    def tile_size(self) -> int:
        """Largest tile side (pixels)."""
        return self.card.input.tile_size or DEFAULT_TILE

    def raw(self, pixels: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Per image, the stitched maps: ``proximity`` (H, W) and class ``logits`` (C, H, W), float32."""
        overlap = tile_overlap(self.card.thresholds, self.tile_size, self.card.input.overlap)
        return point_maps(
            self.network, list(pixels), self.tile_size, overlap, self.device, per_pass=len(pixels), flips=self.flips
        )

    def predict(self, batch: Batch) -> list[Result]:
        """Each image's cells: centres, classes, scores (proximity at the peak) and class probabilities."""
        return predict_points(
            self.network, batch.pixels, self.card.classes, self.card.thresholds, tile_size=self.tile_size,
            overlap=self.card.input.overlap, device=self.device, per_pass=len(batch), paths=batch.paths,
            ids=batch.image_ids(), flips=self.flips,
        )


@register_predictor("patches")
class PatchPredictor(Predictor):
    """Patch classifiers: each image is one patch (a crop of one cell, or of touching cells), classified whole.

    The image is squared about its centre (the missing side mirrored in) and resampled to the network's input
    (``card.input.size``); the class probabilities are averaged over the card's test-time views
    (``card.patch.views``, see :func:`~cytolens.data.patches.test_time_views`). The result carries them as
    ``image_scores`` and the types called as ``image_labels``: the most probable one, or, for a multi-label
    network, every type whose probability reaches its :class:`~cytolens.models.card.PatchThresholds` score.

    :meth:`classify` classifies cells of a larger image instead (square windows about their centres): detect ->
    classify pipelines and the evaluation of a classifier on point or box datasets call it.
    """

    @property
    def geometry(self) -> PatchGeometry:
        """How the card says patches are cut and viewed (defaults when it says nothing)."""
        return self.card.patch or PatchGeometry()

    @property
    def input_side(self) -> int:
        """Side of the square network input, in pixels.

        Raises:
            ModelError: If the card gives no input size.

        """
        if self.card.input.size is None:
            raise ModelError(f"{self.card.architecture}: its model card gives no input size (input.size)")
        return self.card.input.size[0]

    @property
    def multi_label(self) -> bool:
        """Whether the network reads its logits with one sigmoid per type (else with a softmax)."""
        return bool(getattr(self.network, "multi_label", False))

    def views(self, scale: float = 1.0) -> list[View]:
        """The card's test-time views, the shifted ones moved by ``card.patch.shift * scale`` image pixels (``scale``:
        image pixels per pixel of the model's µm/px).

        Raises:
            ModelError: If the card asks for more views than there are (shifted views need a shift).

        """
        try:
            return test_time_views(self.geometry.views, self.geometry.shift * scale)
        except ValueError as error:
            raise ModelError(f"{self.card.architecture}: model card patch.views: {error}") from None

    def _view_logits(
        self, windows: Sequence[tuple[np.ndarray, tuple[float, float], float]], views: Sequence[View], per_pass: int
    ) -> np.ndarray:
        """Logits ``(N, V, C)`` of each window ``(pixels, centre, side)`` in each view, ``per_pass`` crops a pass."""
        size = self.input_side
        crops = [(pixels, centre, side, view) for pixels, centre, side in windows for view in views]
        logits = []
        for start in range(0, len(crops), max(1, per_pass)):
            chunk = np.stack([crop_patch(*crop[:3], size, crop[3]) for crop in crops[start : start + per_pass]])
            tensor = torch.from_numpy(chunk).to(self.device).permute(0, 3, 1, 2).float().div_(255)
            with torch.inference_mode():
                logits.append(self.network(tensor).float().cpu().numpy())
        classes = len(self.card.classes)
        found = np.concatenate(logits) if logits else np.zeros((0, classes), np.float32)
        return found.reshape(len(windows), len(views), classes)

    def _probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Per-type probabilities of ``logits`` (the last axis), as the network reads them; a single-label
        network's adjusted for its training class frequencies (:meth:`~cytolens.models.card.PatchThresholds.adjust`).
        """
        probabilities = self.network.probabilities(torch.from_numpy(logits)).numpy()
        return probabilities if self.multi_label else self.card.thresholds.adjust(probabilities, self.card.classes)

    def raw(self, pixels: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Per image, its ``logits`` and ``probabilities``, each ``(V, C)``: one row per test-time view (the
        identity first), the images' views through the network together.
        """
        views = self.views()
        windows = [(image, (image.shape[1] / 2, image.shape[0] / 2), float(max(image.shape[:2]))) for image in pixels]
        logits = self._view_logits(windows, views, len(windows) * len(views))
        return [{"logits": found, "probabilities": self._probabilities(found)} for found in logits]

    def calls(self, probabilities: np.ndarray) -> list[list[int]]:
        """The types called in each row of ``(N, C)`` probabilities: the most probable one; for a multi-label
        network, every type reaching its threshold (``card.thresholds.score``, one value or per type).
        """
        if not self.multi_label:
            return [[int(index)] for index in probabilities.argmax(axis=1)]
        score, default = self.card.thresholds.score, PatchThresholds().score
        per_type = score if isinstance(score, dict) else dict.fromkeys(self.card.classes, score)
        needed = np.array([per_type.get(name, default) for name in self.card.classes])
        return [np.flatnonzero(row >= needed).tolist() for row in probabilities]

    def predict(self, batch: Batch) -> list[Result]:
        """Each image classified whole: ``image_scores`` the probabilities averaged over the views, ``image_labels``
        the types called (see :meth:`calls`); no cells.
        """
        scores = np.stack([found["probabilities"].mean(axis=0) for found in self.raw(batch.pixels)])
        return [
            replace(batch.result(index, Cells(), self.card.classes), image_labels=called, image_scores=scores[index])
            for index, called in enumerate(self.calls(scores))
        ]

    def classify(
        self,
        pixels: np.ndarray,
        centres: np.ndarray | Sequence[tuple[float, float]],
        sides: np.ndarray | Sequence[float],
        views: Sequence[View] | None = None,
        batch_size: int = PATCHES_PER_PASS,
    ) -> np.ndarray:
        """Class probabilities ``(N, C)`` of cells of one image, averaged over test-time views.

        Args:
            pixels: The image, ``(H, W, 3)`` uint8 RGB.
            centres: ``(N, 2)`` window centres ``x, y`` in image pixels.
            sides: ``(N,)`` window sides in image pixels (resampled to the network's input).
            views: The views to average (default: the card's, see :meth:`views`; shifts in image pixels).
            batch_size: Crops per forward pass, each view of a window counting as one.

        """
        views = self.views() if views is None else list(views)
        centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
        windows = [(pixels, (float(x), float(y)), float(side)) for (x, y), side in zip(centres, sides, strict=True)]
        return self._probabilities(self._view_logits(windows, views, batch_size)).mean(axis=1)


__all__ = [
    "Batch",
    "BoxPredictor",
    "Detector",
    "PATCHES_PER_PASS",
    "PatchPredictor",
    "PointPredictor",
    "Predictor",
    "predictor_type",
    "register_predictor",
]
