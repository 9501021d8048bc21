"""``load_model`` and :class:`CellModel`: the one way to run any trained cytolens model.

Examples:
    >>> import cytolens
    >>> model = cytolens.load_model("blood-cells")  # doctest: +SKIP
    >>> results = model.predict("BloodImage_00015.jpg")  # doctest: +SKIP
    >>> results[0].counts()  # doctest: +SKIP
    {'WBC': 1, 'RBC': 20, 'Platelets': 1}

"""

from __future__ import annotations

import copy
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import torch

from cytolens.data.cells import ScoreThreshold
from cytolens.data.patches import test_time_views
from cytolens.data.stain import STAIN_METHODS, StainMethod, normalise_stain
from cytolens.errors import CytolensError, DataError, ModelError
from cytolens.inference.device import resolve_device
from cytolens.inference.mc_dropout import Passes, pass_rate, shared_trunk, stochastic_heads
from cytolens.inference.onnx_boxes import box_backend
from cytolens.inference.onnx_points import OnnxFCN, point_backend
from cytolens.inference.predictors import Batch, Detector, PatchPredictor, Predictor, predictor_type
from cytolens.inference.scale import mapped_back, rescaled, scale_factor
from cytolens.inference.sources import expand_inputs
from cytolens.io.images import image_mpp, read_image
from cytolens.io.validation import check_number
from cytolens.models.card import ModelCard, Thresholds
from cytolens.models.checkpoint import StoredModel, StoredPipeline, build_network, read_card, read_stored
from cytolens.models.colour import FOREIGN_COLOUR, colour_distance
from cytolens.models.registry import resolve_model
from cytolens.progress import NOTE
from cytolens.results.result import Result

log = logging.getLogger(__name__)

COLOUR_PIXELS = 1 << 14
"""About as many pixels (a regular grid) as the colour check of an image reads: its mean colour moves by under 0.01
spread from that of every pixel (BCCD), at a quarter of the cost of a 640x480 image's 76,800 pixels.
"""
Images = Sequence[str | Path | np.ndarray] | str | Path
"""What models predict on: image files, folders, glob patterns, or RGB arrays (one, or several)."""


def failure(path: Path, error: Exception) -> DataError:
    """The one-line error of an image whose processing raised ``error`` (the traceback goes to the debug log)."""
    log.debug("%s: processing failed", path, exc_info=error)
    message = " ".join(str(error).split())[:200]
    return DataError(path, f"cannot process image ({error.__class__.__name__}: {message})")


class Model(ABC):
    """What :func:`load_model` returns: one model (:class:`CellModel`) or a detect -> classify pipeline
    (:class:`~cytolens.inference.pipeline.Pipeline`); both predict alike.

    Attributes:
        source: Where the model came from (name or path), for messages.

    """

    source: str

    @property
    @abstractmethod
    def card(self) -> ModelCard:
        """The model card of the results: task, classes, input, thresholds, evaluation radius, report..."""

    @property
    def task(self) -> str:
        """``boxes``, ``points`` or ``patches``: what the results hold."""
        return self.card.task

    @property
    def classes(self) -> list[str]:
        """Class names in output order."""
        return list(self.card.classes)

    @property
    def thresholds(self) -> Thresholds:
        """The thresholds this model runs with (the card's, or those given to :meth:`with_thresholds`)."""
        return self.card.thresholds

    @property
    def count_threshold(self) -> ScoreThreshold | None:
        """The score a cell of the results needs to be counted, in :attr:`classes` (``None``: every cell): the
        card's score threshold.
        """
        return self.thresholds.min_score

    @abstractmethod
    def with_thresholds(self, **thresholds: Any) -> Model:
        """The same model with other thresholds (see :meth:`CellModel.with_thresholds`)."""

    @abstractmethod
    def with_tiling(self, tile_size: int | None = None, overlap: int | None = None) -> Model:
        """The same model cutting large images into other tiles (see :meth:`CellModel.with_tiling`)."""

    @abstractmethod
    def with_views(self, views: int) -> Model:
        """The same model averaging another number of test-time views (see :meth:`CellModel.with_views`)."""

    @abstractmethod
    def with_flips(self, flips: bool = True) -> Model:
        """The same point model with or without test-time flips (see :meth:`CellModel.with_flips`)."""

    @abstractmethod
    def with_stain(self, method: StainMethod | None, reference: np.ndarray | None = None) -> Model:
        """The same model normalising the stain of its images first (see :meth:`CellModel.with_stain`)."""

    def predict_iter(
        self,
        images: Images,
        batch_size: int = 1,
        score_threshold: ScoreThreshold | None = None,
        mpp: float | None = None,
        *,
        tile_size: int | None = None,
        overlap: int | None = None,
        views: int | None = None,
        **thresholds: Any,
    ) -> Iterator[Result | DataError]:
        """Predict image by image, yielding a :class:`Result`, or a :class:`DataError` for an image that cannot be
        read (see :func:`~cytolens.io.images.read_image`), that the model cannot see at its scale (see
        :meth:`CellModel.check_fit`) or whose processing fails; the other images still complete.

        Args:
            images: Image files, folders, glob patterns, or RGB arrays.
            batch_size: Images per forward pass (for images larger than one tile: tiles per forward pass).
            score_threshold: Keep cells scoring at least this, one value or one per class (default: the
                model's score threshold, for box models; every cell decoded, for point models). A pipeline's
                detector applies it, in the detector's classes.
            mpp: µm/px of the images (default: what a TIFF file states, see :func:`~cytolens.io.images.image_mpp`).
                Images at another µm/px than the model's are resized to it before the model runs, and the
                cells found mapped back to their own pixels (see :mod:`cytolens.inference.scale`).
            tile_size: Cut images into tiles of at most this many pixels a side instead of the model's tile
                size (see :meth:`with_tiling`).
            overlap: Overlap of neighbouring tiles instead of the model's (see :meth:`with_tiling`).
            views: Patch classifiers: average over this many test-time views instead of the card's (see
                :meth:`with_views`).
            thresholds: Run with these thresholds instead of the model's (same as
                ``model.with_thresholds(**thresholds).predict_iter(...)``; see :meth:`with_thresholds`).

        """
        changed = self._configured(tile_size, overlap, views, thresholds)
        yield from changed._predict_images(images, batch_size, score_threshold, mpp)

    def _configured(
        self, tile_size: int | None, overlap: int | None, views: int | None, thresholds: dict[str, Any]
    ) -> Model:
        """The same model with the thresholds, tiling and views given at run time (those not ``None``)."""
        changed = self.with_thresholds(**thresholds) if thresholds else self
        changed = changed if tile_size is None and overlap is None else changed.with_tiling(tile_size, overlap)
        return changed if views is None else changed.with_views(views)

    @abstractmethod
    def _predict_images(
        self, images: Images, batch_size: int, score_threshold: ScoreThreshold | None, mpp: float | None
    ) -> Iterator[Result | DataError]:
        """:meth:`predict_iter` with the model's own thresholds, tiling and views."""

    def passes_iter(
        self,
        images: Images,
        passes: int = 20,
        seed: int = 0,
        dropout: float | None = None,
        *,
        batch_size: int = 1,
        score_threshold: ScoreThreshold | None = None,
        mpp: float | None = None,
        tile_size: int | None = None,
        overlap: int | None = None,
        views: int | None = None,
        **thresholds: Any,
    ) -> Iterator[tuple[Result | DataError, Passes | None]]:
        """Monte-Carlo dropout passes, image by image (see :mod:`cytolens.inference.mc_dropout`): the plain
        prediction (the :class:`Result` :meth:`predict_iter` gives; the stochastic passes run with torch) and its
        :class:`~cytolens.inference.mc_dropout.Passes`; or an image's :class:`DataError` and ``None``.

        Dropout is on in the heads only; the deterministic trunk runs once per image (or tile), and passes 2..N run
        the heads on it through the same decoding as :meth:`predict_iter`. A pipeline's detector gives the cells of
        the passes, its classifier (at its own head dropout, else at ``dropout``) their class probabilities.

        Args:
            images: Image files, folders, glob patterns, or RGB arrays.
            passes: Passes ``N``, the plain one included.
            seed: Seeds the dropout of each batch's passes: the same seed gives the same passes.
            dropout: Rate of the heads' dropout in the passes (a pipeline's: the detector's) instead of the card's;
                needed for a model trained without head dropout. The weights are unchanged.
            batch_size: As for :meth:`predict_iter`, and the other options likewise.
            score_threshold: As for :meth:`predict_iter`.
            mpp: As for :meth:`predict_iter`.
            tile_size: As for :meth:`predict_iter`.
            overlap: As for :meth:`predict_iter`.
            views: As for :meth:`predict_iter`.
            thresholds: As for :meth:`predict_iter`.

        Raises:
            ModelError: If no dropout rate is given nor stored (one line saying to give one), or the model is a
                patch classifier alone (it finds no cells).
            CytolensError: If ``passes`` is not a whole number of at least 1, or ``dropout`` not from 0 to below 1.

        """
        passes = check_number(passes, "passes", low=1, integer=True)
        changed = self._configured(tile_size, overlap, views, thresholds)
        yield from changed._passes_images(images, batch_size, score_threshold, mpp, passes, seed, dropout)

    @abstractmethod
    def _passes_images(
        self,
        images: Images,
        batch_size: int,
        score_threshold: ScoreThreshold | None,
        mpp: float | None,
        passes: int,
        seed: int,
        dropout: float | None,
    ) -> Iterator[tuple[Result | DataError, Passes | None]]:
        """:meth:`passes_iter` with the model's own thresholds, tiling and views."""

    def predict(
        self,
        images: Images,
        batch_size: int = 1,
        score_threshold: ScoreThreshold | None = None,
        mpp: float | None = None,
        *,
        tile_size: int | None = None,
        overlap: int | None = None,
        views: int | None = None,
        **thresholds: Any,
    ) -> list[Result]:
        """Predict on images; images that cannot be read or processed are logged and skipped.

        Arguments as for :meth:`predict_iter`, thresholds, tiling and views included (``model.predict(images,
        nms=0.5, tile_size=800)``).

        Returns:
            One :class:`Result` per image processed, in input order.

        """
        results = []
        items = self.predict_iter(
            images, batch_size, score_threshold, mpp, tile_size=tile_size, overlap=overlap, views=views, **thresholds
        )
        for item in items:
            if isinstance(item, DataError):
                log.error("%s", item)
            elif item.path.is_file():  # its pixels are let go: plot() reads the file again
                results.append(replace(item, pixels=None))
            else:  # an array input: the result keeps (a reference to) the caller's pixels
                results.append(item)
        return results


class _Item(NamedTuple):
    """One image on its way through :meth:`CellModel.predict_iter`."""

    path: Path
    pixels: np.ndarray  # at the model's scale
    original: np.ndarray  # as read
    factor: float  # pixels = original resized by factor
    mpp: float | None  # of the original


class CellModel(Model):
    """A trained model with its model card, ready to predict.

    Its predictor (:mod:`cytolens.inference.predictors`, chosen by the card's task) turns network outputs
    into results. Thresholds, tiling and test-time views are set at run time without touching files:
    :meth:`with_thresholds`, :meth:`with_tiling` and :meth:`with_views` give a model sharing the network with
    other settings, and :meth:`predict` takes them as keyword arguments too.

    Args:
        network: The torch model (eval mode), or a stand-in running its forward pass in a runtime (an
            :class:`~cytolens.inference.onnx_points.OnnxFCN` holding it).
        card: Its model card (task, classes, thresholds, input configuration...).
        device: Where to run.
        source: Where the model came from (name or path), for messages.
        detector: Runs box detection instead of ``network`` (e.g. an
            :class:`~cytolens.inference.onnx_boxes.OnnxFCOS` for ONNX Runtime or OpenVINO).

    Raises:
        ModelError: If no predictor is registered for the card's task.

    """

    def __init__(
        self,
        network: torch.nn.Module,
        card: ModelCard,
        device: torch.device,
        source: str,
        detector: Detector | None = None,
    ) -> None:
        self.predictor: Predictor = predictor_type(card.task)(network.to(device).eval(), card, device, detector)
        self.source = source
        self.stain: tuple[StainMethod, np.ndarray] | None = None

    @property
    def network(self) -> torch.nn.Module:
        """The torch model (also when a runtime runs its forward pass)."""
        network = self.predictor.network
        return network.network if isinstance(network, OnnxFCN) else network

    @property
    def card(self) -> ModelCard:
        """The model card this model runs with (the stored one, or with the thresholds and tiling given at run
        time).
        """
        return self.predictor.card

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return self.predictor.device

    @property
    def detector(self) -> Detector | None:
        """What runs box detection instead of :attr:`network` (``None``: the network itself)."""
        return self.predictor.detector

    @property
    def backend(self) -> str:
        """``onnx`` (ONNX Runtime) or ``openvino`` when the network runs in that runtime, else ``torch``."""
        runner = self.detector if self.detector is not None else self.predictor.network
        return getattr(runner, "runtime", "torch")

    def _with_card(self, card: ModelCard) -> CellModel:
        """The same model (sharing its network, and the runtime running it) running with ``card``."""
        changed = copy.copy(self)
        changed.predictor = type(self.predictor)(self.predictor.network, card, self.device, self.detector)
        return changed

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
        return self._with_card(self.card.with_thresholds(**thresholds))

    def with_tiling(self, tile_size: int | None = None, overlap: int | None = None) -> CellModel:
        """The same model cutting large images into other tiles, sharing its network.

        Args:
            tile_size: Largest tile side in image pixels (box models: the longer side of tiles shaped like the
                model's input; an image no larger than one tile runs whole); ``None`` keeps the card's.
            overlap: Overlap of neighbouring tiles in pixels (box models: at least the largest cell, for
                cells on tile borders to be seen whole; point models: at least ``2 * min_distance``); ``None``
                keeps the card's.

        Raises:
            CytolensError: If ``tile_size`` is not a whole number of at least 32, or ``overlap`` not one of at
                least 0 (whether it suits the tiles is checked when predicting).

        Examples:
            >>> model = cytolens.load_model("blood-cells").with_tiling(tile_size=800, overlap=200)  # doctest: +SKIP

        """
        changes = {}
        if tile_size is not None:
            changes["tile_size"] = check_number(tile_size, "tile_size", low=32, integer=True)
        if overlap is not None:
            changes["overlap"] = check_number(overlap, "overlap", low=0, integer=True)
        return self._with_card(replace(self.card, input=replace(self.card.input, **changes)))

    def with_flips(self, flips: bool = True) -> CellModel:
        """The same point model averaging each tile's proximity and class maps over its mirrored views (left-right,
        top-bottom and both: four times the work; on CRCHisto nuclei up to +0.05 detection F1), or not, sharing
        its network.

        Raises:
            CytolensError: If the model is not a point model.

        Examples:
            >>> model = cytolens.load_model("rbc-morphology-points").with_flips()  # doctest: +SKIP

        """
        if self.task != "points":
            raise CytolensError(f"{self.source}: test-time flips are for point models, not {self.task} models")
        return self._with_card(replace(self.card, input=replace(self.card.input, flips=bool(flips))))

    def with_stain(self, method: StainMethod | None, reference: np.ndarray | None = None) -> CellModel:
        """The same model normalising each image's stain towards ``reference`` before it runs (H&E from another
        lab; :func:`~cytolens.data.stain.normalise_stain`), sharing its network. Results keep the image's own pixels.
        On CRCHisto nuclei neither method helped consistently (``benchmarks/README.md``): an option, not a default.

        Args:
            method: ``reinhard`` or ``macenko``; ``None`` turns normalisation off.
            reference: RGB pixels of an image stained as the model's training images.

        Raises:
            CytolensError: If ``method`` is unknown, or no ``reference`` is given with a method.

        """
        changed = copy.copy(self)
        if method is None:
            changed.stain = None
            return changed
        if method not in STAIN_METHODS:
            raise CytolensError(f"unknown stain normalisation {method!r}; choose one of {', '.join(STAIN_METHODS)}")
        if reference is None:
            raise CytolensError(f"stain normalisation {method!r} needs a reference image")
        changed.stain = (method, reference)
        return changed

    def with_views(self, views: int) -> CellModel:
        """The same patch classifier averaging its probabilities over ``views`` test-time views instead of the card's
        (see :func:`~cytolens.data.patches.test_time_views`: the patch itself, its flips and rotations, then, if the
        card gives a shift, shifted patches), sharing its network.

        Raises:
            CytolensError: If the model is not a patch classifier, or ``views`` is not a whole number from 1 to
                the number of views there are (8, or 12 with a shift).

        Examples:
            >>> model = cytolens.load_model("classifier.pt").with_views(8)  # doctest: +SKIP

        """
        if not isinstance(self.predictor, PatchPredictor):
            raise CytolensError(f"{self.source}: test-time views are for patch classifiers, not {self.task} models")
        geometry = replace(self.predictor.geometry, views=check_number(views, "views", low=1, integer=True))
        try:
            test_time_views(geometry.views, geometry.shift)
        except ValueError as error:
            raise CytolensError(f"{self.source}: {error}") from None
        return self._with_card(replace(self.card, patch=geometry))

    def __repr__(self) -> str:
        return f"CellModel({self.source!r}, task={self.task!r}, classes={self.classes})"

    def _check_colour(self, path: Path, pixels: np.ndarray) -> None:
        """Warn (one line) when an image's colours lie far from the model's training images' (``card.input.colour``)."""
        stats = self.card.input.colour
        if stats is None:
            return
        step = max(1, int(np.sqrt(pixels.shape[0] * pixels.shape[1] / COLOUR_PIXELS)))
        distance = colour_distance(stats, pixels[::step, ::step])
        if distance > FOREIGN_COLOUR:
            log.warning(
                "%s: its colours lie %.1f spreads from those of %s's training images (over %.0f): another stain or "
                "kind of image? its cells and counts may be wrong",
                path, distance, self.source, FOREIGN_COLOUR,
            )  # fmt: skip

    def _run(self, batch: list[_Item], score_threshold: ScoreThreshold) -> list[Result]:
        found = self.predictor.predict(Batch([item.path for item in batch], [item.pixels for item in batch]))
        results = [mapped_back(result, item.factor, item.original) for result, item in zip(found, batch, strict=True)]
        return [
            replace(
                result,
                mpp=item.mpp,
                cells=result.cells.scoring_at_least(score_threshold, self.classes),
                pixels=None if result.pixels is None else item.original,  # as read, not stain-normalised
            )
            for result, item in zip(results, batch, strict=True)
        ]

    def _run_each(self, batch: list[_Item], score_threshold: ScoreThreshold) -> list[Result | DataError]:
        """:meth:`_run`, where an image that fails to process becomes its :class:`DataError` and the others run."""
        try:
            return self._run(batch, score_threshold)
        except CytolensError:
            raise
        except Exception as error:  # torch and ONNX Runtime raise assorted types; one image must not stop a run
            if len(batch) > 1:
                return [item for one in batch for item in self._run_each([one], score_threshold)]
            return [failure(batch[0].path, error)]

    def check_fit(self, path: str | Path, pixels: np.ndarray) -> None:
        """Refuse an image this model cannot see at its scale (see :meth:`Predictor.check_fit
        <cytolens.inference.predictors.Predictor.check_fit>`: box models refuse an image, or tiles of it, that they
        would shrink too much or to nothing).

        Raises:
            DataError: Naming ``path``.

        """
        self.predictor.check_fit(path, pixels)

    def _score_floor(self, score_threshold: ScoreThreshold | None) -> ScoreThreshold:
        """The score threshold a run applies: ``score_threshold``, else the model's, else 0."""
        threshold = self.thresholds.min_score if score_threshold is None else score_threshold
        return 0.0 if threshold is None else threshold

    def _predict_images(
        self, images: Images, batch_size: int, score_threshold: ScoreThreshold | None, mpp: float | None
    ) -> Iterator[Result | DataError]:
        """Read, rescale and batch the images, and run each batch through the predictor."""
        threshold = self._score_floor(score_threshold)
        for batch in self._batches(images, batch_size, mpp):
            if isinstance(batch, DataError):
                yield batch
            else:
                yield from self._run_each(batch, threshold)

    def _on_torch(self) -> CellModel:
        """The same model (sharing its network) run by the torch network itself."""
        if self.backend == "torch":
            return self
        changed = copy.copy(self)
        changed.predictor = type(self.predictor)(self.network, self.card, self.device)
        return changed

    def _passes_images(
        self,
        images: Images,
        batch_size: int,
        score_threshold: ScoreThreshold | None,
        mpp: float | None,
        passes: int,
        seed: int,
        dropout: float | None,
    ) -> Iterator[tuple[Result | DataError, Passes | None]]:
        """Per batch, the plain pass (predict's own: in the model's runtime, if it has one) and ``passes - 1``
        stochastic ones (on torch: a runtime's graph has no dropout), sharing the trunk's outputs.
        """
        if isinstance(self.predictor, PatchPredictor):
            raise ModelError(
                f"{self.source}: Monte-Carlo passes need a model that finds cells (a box or point model, or one with "
                "a classifier), not a patch classifier alone"
            )
        model, threshold = self._on_torch(), self._score_floor(score_threshold)
        rate = pass_rate(model.network, self.source, given=dropout)
        for batch in model._batches(images, batch_size, mpp):
            if isinstance(batch, DataError):
                yield batch, None
                continue
            # predict's own pass: in the runtime, before the torch trunk is shared (so the trunk runs once, below);
            # in torch for an int8 model, whose other passes run in float
            plain = self._run_each(batch, threshold) if model is not self and self.card.int8 is None else None
            with shared_trunk(model.network):
                plain = model._run_each(batch, threshold) if plain is None else plain
                done = [item for item, result in zip(batch, plain, strict=True) if isinstance(result, Result)]
                with stochastic_heads(model.network, rate, seed):
                    runs = [model._run_each(done, threshold) for _ in range(passes - 1)] if done else []
            per_image = iter(list(zip(*runs, strict=True)) if runs else [()] * len(done))
            for result in plain:
                if isinstance(result, DataError):
                    yield result, None
                    continue
                stochastic = next(per_image)
                failed = next((run for run in stochastic if isinstance(run, DataError)), None)
                if failed is not None:
                    yield failed, None
                else:
                    cells = [result.cells, *(cast(Result, run).cells for run in stochastic)]
                    yield result, Passes(cells, None, self.classes)

    def _batches(self, images: Images, batch_size: int, mpp: float | None) -> Iterator[list[_Item] | DataError]:
        """The images read and rescaled to the model's µm/px, in batches of ``batch_size``, in input order; an image
        that cannot be read or that the model cannot see as its :class:`DataError`.
        """
        items = [images] if isinstance(images, str | Path | np.ndarray) else list(images)
        sources: list[tuple[Path, np.ndarray | None]] = []
        for index, item in enumerate(items):  # in input order
            if isinstance(item, np.ndarray):
                sources.append((Path(f"array{index}"), item))
            else:
                sources.extend((path, None) for path in expand_inputs([item]))
        scales = _ScaleMessages(self)
        batch: list[_Item] = []
        for path, pixels in sources:
            try:
                original = read_image(path) if pixels is None else pixels
                known = mpp or (image_mpp(path) if pixels is None else None)
                factor = scale_factor(known, self.card.input.mpp)
                scales.saw(known, factor)
                seen = original if self.stain is None else normalise_stain(original, *self.stain)
                self._check_colour(path, seen)
                pixels = rescaled(seen, factor)
                self.check_fit(path, pixels)
            except DataError as error:
                yield error
                continue
            batch.append(_Item(path, pixels, original, factor, known))
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


class _ScaleMessages:
    """Says once per run which scale the model assumes for images without one, and how others are resized."""

    def __init__(self, model: CellModel) -> None:
        self.model = model
        self.said: set[float | None] = set()

    def saw(self, mpp: float | None, factor: float) -> None:
        model_mpp = self.model.card.input.mpp
        key = None if mpp is None else round(factor, 3)
        if model_mpp is None or key in self.said:
            return
        self.said.add(key)
        if mpp is None:
            log.log(
                NOTE,
                "%s: images state no µm/px: taken at the model's %.3g µm/px (give --mpp to resize them)",
                self.model.source, model_mpp,
            )  # fmt: skip
        elif factor != 1.0:
            log.info(
                "%s: images at %.3g µm/px resized by %.3g to the model's %.3g µm/px; cells mapped back",
                self.model.source, mpp, factor, model_mpp,
            )  # fmt: skip


def _cell_model(path: Path, stored: StoredModel, source: str, device: torch.device, backend: str) -> CellModel:
    """The :class:`CellModel` of a stored model (``path``: the file holding it, named in errors), its network run
    by ``backend`` (point FCNs: :func:`~cytolens.inference.onnx_points.point_backend`; the rest:
    :func:`~cytolens.inference.onnx_boxes.box_backend`).
    """
    network = build_network(path, stored)
    if device.type == "cpu" and torch.get_num_threads() > 1:
        network = network.to(memory_format=torch.channels_last)
    if stored.card.task == "points":
        runner = point_backend(backend, network, device, path, stored.card.int8)
        return CellModel(runner, stored.card, device, source)
    runner = box_backend(backend, network, stored.card.task, device, path, stored.card.int8)
    return CellModel(network, stored.card, device, source, runner)


def load_model(
    name_or_path: str | Path, device: str = "auto", backend: str = "auto", *, classifier: str | Path | None = None
) -> Model:
    """Load a bundled model by name (see ``cytolens models``), a checkpoint file or a pipeline file.

    Args:
        name_or_path: Bundled model name, checkpoint file, or pipeline file (a detector and the patch classifier of
            its cells, see :mod:`cytolens.inference.pipeline`).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        backend: ``torch``, ``onnx`` (ONNX Runtime) or ``openvino`` (both for FCOS box models and point FCNs on
            the CPU), or ``auto`` (the fastest runtime that applies and is installed, else ``torch``; see
            :data:`cytolens.inference.runtimes.RUNTIMES`). A classifier runs with torch.
        classifier: A patch classifier (bundled name or checkpoint file) that classifies every cell the model finds:
            the two make a :class:`~cytolens.inference.pipeline.Pipeline`.

    Returns:
        A :class:`CellModel`, or a :class:`~cytolens.inference.pipeline.Pipeline` for a pipeline file or when
        ``classifier`` is given.

    Raises:
        ModelError: If the model cannot be found or loaded, the backend cannot run it, or the model and
            ``classifier`` do not make a pipeline (a pipeline file already has its classifier).
        CytolensError: If the device or backend is unknown or not available.

    """
    from cytolens.inference.pipeline import Pipeline

    path = resolve_model(name_or_path)
    torch_device = resolve_device(device)
    stored = read_stored(path)
    source = str(name_or_path)
    if isinstance(stored, StoredPipeline):
        if classifier is not None:
            raise ModelError(f"{name_or_path}: a pipeline ({stored.describe()}) has its classifier already")
        finder = _cell_model(path, stored.detector, source, torch_device, backend)
        patches = _cell_model(path, stored.classifier, source, torch_device, "torch")
        return Pipeline(finder, patches, source, stored.card)
    model = _cell_model(path, stored, source, torch_device, backend)
    if classifier is None:
        return model
    classifier_path = resolve_model(classifier)
    patches = _cell_model(classifier_path, read_card(classifier_path), str(classifier), torch_device, "torch")
    return Pipeline(model, patches, f"{name_or_path} + {classifier}")


__all__ = ["CellModel", "Images", "Model", "failure", "load_model"]
