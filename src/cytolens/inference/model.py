"""``load_model`` and :class:`CellModel`: the one way to run any trained cytolens model.

Examples:
    >>> import cytolens
    >>> model = cytolens.load_model("blood-cells")  # doctest: +SKIP
    >>> results = model.predict("BloodImage_00015.jpg")  # doctest: +SKIP
    >>> results[0].counts()  # doctest: +SKIP
    {'WBC': 1, 'RBC': 11, 'Platelets': 1}

"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cytolens.data.cells import Cells, ScoreThreshold
from cytolens.errors import CytolensError, DataError, ModelError
from cytolens.inference.device import resolve_device
from cytolens.inference.sources import expand_inputs
from cytolens.io.images import read_image
from cytolens.models.card import ModelCard, Thresholds
from cytolens.models.checkpoint import load_network
from cytolens.models.registry import resolve_model
from cytolens.results.result import Result

log = logging.getLogger(__name__)

MPP_TOLERANCE = 0.25
"""Relative difference of µm/px between an image and the model's training data that triggers a warning."""


class CellModel:
    """A trained model with its model card, ready to predict.

    Thresholds are set at run time without touching files: :meth:`with_thresholds` gives a model sharing
    the network with other thresholds, and :meth:`predict` takes them as keyword arguments too.

    Args:
        network: The torch model (eval mode).
        card: Its model card (task, classes, thresholds, input configuration...).
        device: Where to run.
        source: Where the model came from (name or path), for messages.
        detector: Runs box detection instead of ``network`` (e.g. an
            :class:`~cytolens.inference.onnx_boxes.OnnxFCOS` for ONNX Runtime).

    """

    def __init__(
        self,
        network: torch.nn.Module,
        card: ModelCard,
        device: torch.device,
        source: str,
        detector: Callable[[list[torch.Tensor]], list[dict[str, torch.Tensor]]] | None = None,
    ) -> None:
        self.network = network.to(device).eval()
        self.card = card
        self.device = device
        self.source = source
        self.detector = detector

    @property
    def backend(self) -> str:
        """``onnx`` when box detection runs in ONNX Runtime, else ``torch``."""
        return "torch" if self.detector is None else "onnx"

    @property
    def task(self) -> str:
        """``boxes`` or ``points``."""
        return self.card.task

    @property
    def classes(self) -> list[str]:
        """Class names in output order."""
        return list(self.card.classes)

    @property
    def thresholds(self) -> Thresholds:
        """The thresholds this model runs with (the card's, or those given to :meth:`with_thresholds`)."""
        return self.card.thresholds

    def with_thresholds(self, **thresholds: Any) -> CellModel:
        """The same model with other thresholds, sharing its network (nothing is rebuilt or reloaded).

        Args:
            thresholds: Thresholds of the model's task (:class:`~cytolens.models.card.BoxThresholds`: ``score``,
                one value or one per class, and ``nms``; :class:`~cytolens.models.card.PointThresholds`:
                ``threshold_rel``, ``threshold_abs``, ``min_distance``); ``None`` restores a default.

        Raises:
            CytolensError: If a name is not a threshold of the task, or a value is out of its range.

        Examples:
            >>> strict = cytolens.load_model("blood-cells").with_thresholds(score=0.7, nms=0.5)  # doctest: +SKIP

        """
        changed = copy.copy(self)
        changed.card = self.card.with_thresholds(**thresholds)
        return changed

    def __repr__(self) -> str:
        return f"CellModel({self.source!r}, task={self.task!r}, classes={self.classes})"

    def _check_mpp(self, mpp: float | None) -> None:
        model_mpp = self.card.input.mpp
        if mpp and model_mpp and abs(mpp - model_mpp) / model_mpp > MPP_TOLERANCE:
            log.warning(
                "images at %.3g µm/px differ from the model's %.3g µm/px by more than %d%%; resample them",
                mpp,
                model_mpp,
                int(MPP_TOLERANCE * 100),
            )

    def _run(
        self, batch: list[tuple[Path, np.ndarray]], score_threshold: ScoreThreshold, mpp: float | None
    ) -> list[Result]:
        results = []
        if self.task == "boxes":
            from cytolens.inference.boxes import detect_boxes

            set_nms(self.network, self.thresholds.nms)
            found = detect_boxes(self.detector or self.network, [pixels for _, pixels in batch], self.device)
            for (path, pixels), (boxes, labels, scores) in zip(batch, found, strict=True):
                height, width = pixels.shape[:2]
                cells = Cells(labels=labels, scores=scores, boxes=boxes)
                results.append(
                    Result(path, width, height, path.stem, mpp, cells=cells, classes=self.classes, pixels=pixels)
                )
        elif self.task == "points":
            from cytolens.inference.peaks import predict_points

            tiling = {"tile_size": self.card.input.tile_size, "overlap": self.card.input.overlap}
            tiling = {name: value for name, value in tiling.items() if value is not None}
            meta = {"classes": self.classes, "thresholds": self.thresholds.to_dict()}
            for path, pixels in batch:
                found = predict_points(
                    self.network, pixels, meta, device=self.device, path=path, image_id=path.stem, mpp=mpp, **tiling
                )
                results.append(replace(found, pixels=pixels))
        else:
            raise ModelError(f"{self.source}: cannot predict for task {self.task!r}")
        return [replace(found, cells=found.cells.scoring_at_least(score_threshold, self.classes)) for found in results]

    def _run_each(
        self, batch: list[tuple[Path, np.ndarray]], score_threshold: ScoreThreshold, mpp: float | None
    ) -> list[Result | DataError]:
        """:meth:`_run`, where an image that fails to process becomes its :class:`DataError` and the others run."""
        try:
            return self._run(batch, score_threshold, mpp)
        except CytolensError:
            raise
        except Exception as error:  # torch and ONNX Runtime raise assorted types; one image must not stop a run
            if len(batch) > 1:
                return [item for one in batch for item in self._run_each([one], score_threshold, mpp)]
            path = batch[0][0]
            log.debug("%s: processing failed", path, exc_info=True)
            message = " ".join(str(error).split())[:200]
            return [DataError(path, f"cannot process image ({error.__class__.__name__}: {message})")]

    def check_fit(self, path: str | Path, pixels: np.ndarray) -> None:
        """Refuse an image this model cannot see at its scale (see :func:`~cytolens.inference.boxes.check_fit`).

        Raises:
            DataError: Naming ``path``, for a box model that would shrink the image too much or to nothing.

        """
        if self.task == "boxes":
            from cytolens.inference.boxes import check_fit

            height, width = pixels.shape[:2]
            check_fit(self.network, path, width, height)

    def predict_iter(
        self,
        images: Sequence[str | Path | np.ndarray] | str | Path,
        batch_size: int = 1,
        score_threshold: ScoreThreshold | None = None,
        mpp: float | None = None,
        **thresholds: Any,
    ) -> Iterator[Result | DataError]:
        """Predict image by image, yielding a :class:`Result`, or a :class:`DataError` for an image that cannot be
        read (see :func:`~cytolens.io.images.read_image`), that the model cannot see at its scale (see
        :meth:`check_fit`) or whose processing fails; the other images still complete.

        Args:
            images: Image files, folders, glob patterns, or RGB arrays.
            batch_size: Images per forward pass.
            score_threshold: Keep cells scoring at least this, one value or one per class (default: the
                model's score threshold, for box models; every cell decoded, for point models).
            mpp: µm/px of the images, if known (checked against the model's).
            thresholds: Run with these thresholds instead of the model's (same as
                ``model.with_thresholds(**thresholds).predict_iter(...)``; see :meth:`with_thresholds`).

        """
        if thresholds:
            yield from self.with_thresholds(**thresholds).predict_iter(images, batch_size, score_threshold, mpp)
            return
        threshold = self.thresholds.min_score if score_threshold is None else score_threshold
        threshold = 0.0 if threshold is None else threshold
        items = [images] if isinstance(images, str | Path | np.ndarray) else list(images)
        sources: list[tuple[Path, np.ndarray | None]] = []
        for index, item in enumerate(items):  # in input order
            if isinstance(item, np.ndarray):
                sources.append((Path(f"array{index}"), item))
            else:
                sources.extend((path, None) for path in expand_inputs([item]))
        self._check_mpp(mpp)
        batch: list[tuple[Path, np.ndarray]] = []
        for path, pixels in sources:
            try:
                pixels = read_image(path) if pixels is None else pixels
                self.check_fit(path, pixels)
            except DataError as error:
                yield error
                continue
            batch.append((path, pixels))
            if len(batch) == batch_size:
                yield from self._run_each(batch, threshold, mpp)
                batch = []
        if batch:
            yield from self._run_each(batch, threshold, mpp)

    def predict(
        self,
        images: Sequence[str | Path | np.ndarray] | str | Path,
        batch_size: int = 1,
        score_threshold: ScoreThreshold | None = None,
        mpp: float | None = None,
        **thresholds: Any,
    ) -> list[Result]:
        """Predict on images; images that cannot be read or processed are logged and skipped.

        Arguments as for :meth:`predict_iter`, thresholds included (``model.predict(images, nms=0.5)``).

        Returns:
            One :class:`Result` per image processed, in input order.

        """
        results = []
        for item in self.predict_iter(images, batch_size, score_threshold, mpp, **thresholds):
            if isinstance(item, DataError):
                log.error("%s", item)
            elif item.path.is_file():  # its pixels are let go: plot() reads the file again
                results.append(replace(item, pixels=None))
            else:  # an array input: the result keeps (a reference to) the caller's pixels
                results.append(item)
        return results


def set_nms(network: torch.nn.Module, iou: float) -> None:
    """Make a torchvision box detector's NMS drop a box overlapping a higher-scoring one by more than ``iou``.

    FCOS keeps the IoU on the model (``nms_thresh``), Faster R-CNN on its ROI heads; both read it when they
    post-process, so it changes without rebuilding the network (also when the network runs in ONNX Runtime:
    :class:`~cytolens.inference.onnx_boxes.OnnxFCOS` post-processes with the torch model).
    """
    getattr(network, "roi_heads", network).nms_thresh = iou


def load_model(name_or_path: str | Path, device: str = "auto", backend: str = "auto") -> CellModel:
    """Load a bundled model by name (see ``cytolens models``) or a checkpoint file.

    Args:
        name_or_path: Bundled model name or checkpoint file.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        backend: ``torch``, ``onnx`` (ONNX Runtime, for FCOS box models on the CPU), or ``auto``
            (``onnx`` where it applies and is installed, else ``torch``); see
            :func:`cytolens.inference.onnx_boxes.box_backend`.

    Raises:
        ModelError: If the model cannot be found or loaded, or the backend cannot run it.
        CytolensError: If the device or backend is unknown or not available.

    """
    from cytolens.inference.onnx_boxes import box_backend

    path = resolve_model(name_or_path)
    torch_device = resolve_device(device)
    network, card = load_network(path)
    if torch_device.type == "cpu" and torch.get_num_threads() > 1:
        network = network.to(memory_format=torch.channels_last)
    detector = box_backend(backend, network, card.task, torch_device, path)
    return CellModel(network, card, torch_device, str(name_or_path), detector)


__all__ = ["CellModel", "load_model", "set_nms"]
