"""The model card: what a trained model is and how to use it, as typed records stored as plain JSON.

A checkpoint carries one :class:`ModelCard` (see :mod:`cytolens.models.checkpoint`). Its JSON layout is
:meth:`ModelCard.to_dict`, one entry per field::

    task, architecture, kwargs, classes          what to build (a registered architecture) and its outputs
    input        mpp, mpp_source, size, tile_size, overlap,      the images it expects
                 colour (mean, spread, images)
    thresholds   per task (see below), with tuned_on             how outputs become cells
    proximity    d, a                                            point models: the proximity target
    int8         ranges, keep_float, about                       point FCNs, box detectors: int8 calibration (quantise)
    evaluation   radius                                          point matching radius (pixels)
    report       ratios                                          count ratios for counts.csv
    provenance   recipe, data (name, licence, split, images per role), init, training_minutes, notes
    metrics      free-form figures measured on held-out data
    notice, cytolens_version, stored_half

Thresholds are typed per task through a small registry (:func:`register_thresholds`): box models have
:class:`BoxThresholds` (``score``, one value or one per class, and the NMS IoU ``nms``), point models
:class:`PointThresholds` (``threshold_rel`` ``ξ``, ``threshold_abs``, ``min_distance``).

:meth:`ModelCard.from_dict` checks every field (one-line errors naming the file and the field) and also
reads the old flat metadata layout (checkpoint format 1: ``input_size``, ``mpp``, ``mpp_source``,
``recipe``, ``data``, ``init``, ``training_minutes``, ``training_minutes_note`` at the top level and the
matching radius under ``thresholds``), naming such fields as that file spells them.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Self, TypeVar

import numpy as np

from cytolens.data.cells import ScoreThreshold
from cytolens.errors import CytolensError, DataError, ModelError
from cytolens.io.validation import ClassNames, check_number
from cytolens.models.registry import Architecture, architectures
from cytolens.models.task_registry import TaskRegistry

_MOVED = {
    "input_size": ("input", "size"),
    "mpp": ("input", "mpp"),
    "mpp_source": ("input", "mpp_source"),
    "recipe": ("provenance", "recipe"),
    "data": ("provenance", "data"),
    "init": ("provenance", "init"),
    "training_minutes": ("provenance", "training_minutes"),
    "training_minutes_note": ("provenance", "notes"),
}
"""Entries of the old flat layout and where the card holds them (section, field)."""
_OLD_RADIUS = ("thresholds", "radius")
"""Where the old flat layout kept the point matching radius (now ``evaluation.radius``)."""
REQUIRED = ("task", "architecture", "kwargs", "classes")
Record = TypeVar("Record")
"""A section of the card: a dataclass whose fields carry, in their metadata, the ``read`` that checks them."""


class _Reader:
    """Checks one card's values, naming the file and the field in every error.

    Args:
        source: The checkpoint, or ``None`` for values given at run time (errors are then
            :class:`CytolensError` without a file).
        renamed: Card fields read from the old flat layout, by the name that layout gives them.
        classes: The model's classes (for per-class scores and count ratios).

    """

    def __init__(self, source: Path | None, renamed: dict[str, str] | None = None, classes: tuple[str, ...] = ()):
        self.source = source
        self.renamed = renamed or {}
        self.classes = classes

    def name(self, where: str) -> str:
        """``where`` as the source spells it (``input.mpp`` read from an old file is ``mpp``)."""
        for new, old in self.renamed.items():
            if where == new or where.startswith(f"{new}.") or where.startswith(f"{new}["):
                return old + where[len(new) :]
        return where

    def error(self, where: str, problem: str) -> CytolensError:
        if self.source is None:
            return CytolensError(f"{self.name(where)} {problem}")
        return ModelError(f"{self.source}: metadata {self.name(where)} {problem}")

    def number(self, value: Any, where: str, **limits: Any) -> Any:
        what = self.name(where) if self.source is None else f"metadata {self.name(where)}"
        try:
            return check_number(value, what, self.source, **limits)
        except DataError as error:
            raise ModelError(str(error)) from None

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.error(where, f"must be text, not {value!r:.60}")
        return value

    def flag(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(where, f"must be true or false, not {value!r:.60}")
        return value

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        """``value`` if it is a mapping with text keys (``None`` as an empty one)."""
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            raise self.error(where, f"must be a mapping, not {value!r:.60}")
        return value

    def plain(self, value: Any, where: str) -> dict[str, Any]:
        """``value`` as a mapping of plain JSON data (NumPy scalars become numbers...), so that it needs no code."""
        try:
            return json.loads(json.dumps(self.mapping(value, where), allow_nan=True))
        except (TypeError, ValueError) as error:
            raise self.error(where, f"is not plain JSON-like data ({error})") from None

    def section(self, kind: type[Record], value: Any, where: str, defaults: dict[str, Any] | None = None) -> Record:
        """A section record from its mapping: every field read by its reader, absent (or null) ones defaulted."""
        values = self.mapping(value, where)
        known = [item.name for item in fields(kind)]
        unknown = [key for key in values if key not in known]
        if unknown:
            listed = ", ".join(repr(key) for key in unknown)
            raise self.error(where, f"holds unknown entries {listed} (known: {', '.join(known)})")
        values = {**(defaults or {}), **{key: item for key, item in values.items() if item is not None}}
        required = [item.name for item in fields(kind) if item.default is MISSING and item.default_factory is MISSING]
        missing = [name for name in required if name not in values]
        if missing:
            raise self.error(where, f"lacks {', '.join(missing)}")
        read = {item.name: item.metadata["read"](self, values[item.name], f"{where}.{item.name}")
                for item in fields(kind) if item.name in values}
        return kind(**read)


def _number(**limits: Any) -> dict[str, Callable[[_Reader, Any, str], Any]]:
    return {"read": lambda reader, value, where: reader.number(value, where, **limits)}


_TEXT = {"read": _Reader.text}
_FLAG = {"read": _Reader.flag}
_PLAIN = {"read": _Reader.plain}
_UNIT = {"low": 0.0, "high": 1.0}


def _read_size(reader: _Reader, value: Any, where: str) -> tuple[int, int]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise reader.error(where, f"must be two whole numbers (width, height), not {value!r:.60}")
    width, height = (reader.number(side, f"{where}[{i}]", low=1, integer=True) for i, side in enumerate(value))
    return width, height


def _read_score(reader: _Reader, value: Any, where: str) -> ScoreThreshold:
    if not isinstance(value, dict):
        return reader.number(value, where, **_UNIT)
    unknown = [name for name in value if name not in reader.classes]
    if unknown:
        raise reader.error(where, f"names {unknown[0]!r:.60}, not a class of the model ({', '.join(reader.classes)})")
    return {name: reader.number(number, f"{where}[{name!r}]", **_UNIT) for name, number in value.items()}


def _read_prior(reader: _Reader, value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise reader.error(where, f"must map class names to their shares of the training patches, not {value!r:.60}")
    return _read_score(reader, value, where)


def _read_ratios(reader: _Reader, value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list | tuple):
        raise reader.error(where, f"must be a list of class pairs, not {value!r:.60}")
    ratios = []
    for i, pair in enumerate(value):
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(name in reader.classes for name in pair)):
            raise reader.error(f"{where}[{i}]", f"must be two classes of the model, not {pair!r:.60}")
        ratios.append((pair[0], pair[1]))
    return tuple(ratios)


# --- thresholds, per task ------------------------------------------------------------------------------


class Thresholds:
    """Base of the thresholds of one task (dataclasses registered with :func:`register_thresholds`)."""

    tuned_on: str | None

    @classmethod
    def defaults(cls, architecture: Architecture, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Values a card that states none takes from how the network is built (none by default)."""
        return {}

    @property
    def min_score(self) -> ScoreThreshold | None:
        """The score a decoded cell needs to be kept (``None``: decoding alone decides)."""
        return None

    def to_dict(self) -> dict[str, Any]:
        """The thresholds as plain JSON data."""
        return {item.name: _plain(getattr(self, item.name)) for item in fields(self)}


_THRESHOLDS = TaskRegistry[type[Thresholds]]("thresholds")
ThresholdsType = TypeVar("ThresholdsType", bound=type[Thresholds])


def register_thresholds(task: str) -> Callable[[ThresholdsType], ThresholdsType]:
    """Decorator registering the thresholds dataclass of ``task`` (each field's metadata holds its ``read``)."""
    return _THRESHOLDS.register(task)


def thresholds_type(task: str) -> type[Thresholds]:
    """The thresholds dataclass of ``task``.

    Raises:
        ModelError: If no thresholds are registered for it.

    """
    return _THRESHOLDS[task]


@register_thresholds("boxes")
@dataclass(frozen=True)
class BoxThresholds(Thresholds):
    """Box detectors: the score a box needs, and the IoU above which NMS drops the lower-scoring of two boxes.

    Attributes:
        score: One score threshold, or one per class name (classes not named: 0).
        nms: NMS IoU, applied when the detector runs (it overrides the ``nms_thresh`` the network was built with).
        tuned_on: How the values were chosen.

    """

    score: ScoreThreshold = field(default=0.0, metadata={"read": _read_score})
    nms: float = field(default=0.6, metadata=_number(**_UNIT))
    tuned_on: str | None = field(default=None, metadata=_TEXT)

    @classmethod
    def defaults(cls, architecture: Architecture, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The NMS IoU the network is built with (its ``nms_thresh`` argument, else the builder's default)."""
        if "nms_thresh" in kwargs:
            return {"nms": kwargs["nms_thresh"]}
        parameter = inspect.signature(architecture.builder).parameters.get("nms_thresh")
        return {} if parameter is None or parameter.default is inspect.Parameter.empty else {"nms": parameter.default}

    @property
    def min_score(self) -> ScoreThreshold:
        return self.score


@register_thresholds("patches")
@dataclass(frozen=True)
class PatchThresholds(Thresholds):
    """Patch classifiers: the probability a type needs to be called present in a patch.

    A single-label model calls each patch its most probable type; a multi-label model calls every type whose
    sigmoid reaches ``score`` (one value, or one per type tuned on validation).

    A single-label model trained with class-balanced sampling learns as if every type were equally common, and
    so over-calls rare types. With ``class_prior`` (each type's share of the training patches) and
    ``prior_power`` τ, its softmax is multiplied by ``class_prior ** τ`` and renormalised (logit adjustment;
    τ = 1 restores the training frequencies, 0 leaves the balanced model as it is).

    Attributes:
        score: One probability threshold, or one per class name (classes not named: 0.5).
        class_prior: Each type's share of the training patches, by class name (``None``: no adjustment).
        prior_power: τ, the power of ``class_prior`` (chosen on validation).
        tuned_on: How the values were chosen.

    """

    score: ScoreThreshold = field(default=0.5, metadata={"read": _read_score})
    class_prior: dict[str, float] | None = field(default=None, metadata={"read": _read_prior})
    prior_power: float = field(default=0.0, metadata=_number(low=0.0, high=4.0))
    tuned_on: str | None = field(default=None, metadata=_TEXT)

    def adjust(self, probabilities: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        """Softmax probabilities ``(..., C)`` reweighted by ``class_prior ** prior_power`` and renormalised."""
        if not self.class_prior or not self.prior_power:
            return probabilities
        weights = np.array([self.class_prior.get(name, 0.0) for name in classes]) ** self.prior_power
        adjusted = probabilities * weights
        return adjusted / np.maximum(adjusted.sum(axis=-1, keepdims=True), 1e-12)


@register_thresholds("points")
@dataclass(frozen=True)
class PointThresholds(Thresholds):
    """Point detectors: how peaks of the proximity map become cells (see :mod:`cytolens.inference.peaks`).

    Attributes:
        threshold_rel: ``ξ``: a peak must exceed this fraction of the image's highest peak.
        threshold_abs: A peak must exceed this value.
        min_distance: Smallest distance (pixels, Chebyshev) between two cells.
        tuned_on: How the values were chosen.

    """

    threshold_rel: float = field(default=0.4, metadata=_number(**_UNIT))
    threshold_abs: float = field(default=0.1, metadata=_number(**_UNIT))
    min_distance: int = field(default=6, metadata=_number(low=1, integer=True))
    tuned_on: str | None = field(default=None, metadata=_TEXT)


# --- the other sections ----------------------------------------------------------------------------------


def _channels(**limits: Any) -> dict[str, Callable[[_Reader, Any, str], Any]]:
    def read(reader: _Reader, value: Any, where: str) -> tuple[float, float, float]:
        if not isinstance(value, list | tuple) or len(value) != 3:
            raise reader.error(where, f"must be three numbers (L*, a*, b*), not {value!r:.60}")
        first, second, third = (reader.number(item, f"{where}[{i}]", **limits) for i, item in enumerate(value))
        return first, second, third

    return {"read": read}


@dataclass(frozen=True)
class ColourStats:
    """The colours of a model's training images, in CIELAB (L* 0-100, a*, b*), from a sample of them.

    See :mod:`cytolens.models.colour` (how they are measured, and how far an image lies from them).

    Attributes:
        mean: Per channel, the mean over the sampled images of each image's mean colour.
        spread: Per channel, the standard deviation of the sampled images' mean colours.
        images: How many images were sampled.

    """

    mean: tuple[float, float, float] = field(metadata=_channels())
    spread: tuple[float, float, float] = field(metadata=_channels(low=0.0))
    images: int = field(metadata=_number(low=1, integer=True))


def _read_colour(reader: _Reader, value: Any, where: str) -> ColourStats:
    return reader.section(ColourStats, value, where)


@dataclass(frozen=True)
class InputConfig:
    """The images a model expects.

    Attributes:
        mpp: µm/px of its training images (``None``: unknown).
        mpp_source: How ``mpp`` was obtained.
        size: The network's input size (width, height) as trained.
        tile_size: Largest tile side for tiled prediction, in image pixels (``None``: the predictor's default).
            Box models resize each tile to ``size``; box training records the longer side of its largest field, so
            that a field runs whole and is resized as in training (cards without it tile at ``size``).
        overlap: Overlap of neighbouring tiles in pixels (``None``: the predictor's default).
        colour: The colours of its training images (``None``: not recorded), to warn about foreign input.
        flips: Point models: average each tile's maps over its mirrored views (test-time flips; four times the
            work; see :data:`cytolens.inference.peaks.FLIPS`).

    """

    mpp: float | None = field(default=None, metadata=_number(low=0.0, low_open=True))
    mpp_source: str | None = field(default=None, metadata=_TEXT)
    size: tuple[int, int] | None = field(default=None, metadata={"read": _read_size})
    tile_size: int | None = field(default=None, metadata=_number(low=32, integer=True))
    overlap: int | None = field(default=None, metadata=_number(low=0, integer=True))
    colour: ColourStats | None = field(default=None, metadata={"read": _read_colour})
    flips: bool = field(default=False, metadata=_FLAG)


@dataclass(frozen=True)
class Proximity:
    """The proximity target a point model learnt: it reaches 0 at distance ``d`` (pixels), sharpness ``a``."""

    d: float = field(metadata=_number(low=0.0, low_open=True))
    a: float = field(metadata=_number(low=0.0, low_open=True))


@dataclass(frozen=True)
class PatchGeometry:
    """How a patch classifier's patches are cut (see :mod:`cytolens.data.patches`).

    Attributes:
        side: Side of the square around a cell marked by a point, in pixels at ``input.mpp`` (``None``:
            cells need boxes, or each image is one patch).
        pad: Padding of a squared box, as a fraction of its side.
        views: Test-time views averaged per patch (1: the patch alone; see
            :func:`~cytolens.data.patches.test_time_views`).
        shift: Centre shift, in pixels, of the shifted test-time views (beyond the 8 dihedral ones).

    """

    side: float | None = field(default=None, metadata=_number(low=1.0))
    pad: float = field(default=0.1, metadata=_number(low=0.0, high=4.0))
    views: int = field(default=1, metadata=_number(low=1, high=12, integer=True))
    shift: float = field(default=0.0, metadata=_number(low=0.0))


@dataclass(frozen=True)
class Evaluation:
    """How the model's figures are measured: ``radius``, the point matching radius in pixels (point models)."""

    radius: float | None = field(default=None, metadata=_number(low=0.0, low_open=True))


@dataclass(frozen=True)
class Report:
    """What ``predict`` reports by default: ``ratios``, count ratios (numerator, denominator class) for counts.csv."""

    ratios: tuple[tuple[str, str], ...] = field(default=(), metadata={"read": _read_ratios})


@dataclass(frozen=True)
class DataRecord:
    """One data set a model was trained or validated on."""

    name: str | None = field(default=None, metadata=_TEXT)
    licence: str | None = field(default=None, metadata=_TEXT)
    split: str | None = field(default=None, metadata=_TEXT)
    images: int | None = field(default=None, metadata=_number(low=0, integer=True))


def _read_data(reader: _Reader, value: Any, where: str) -> dict[str, DataRecord | None]:
    return {
        role: None if record is None else reader.section(DataRecord, record, f"{where}.{role}")
        for role, record in reader.mapping(value, where).items()
    }


@dataclass(frozen=True)
class Provenance:
    """Where a model comes from.

    Attributes:
        recipe: The training recipe (free-form, as the recipe writes itself).
        data: Per role (``train``, ``val``...), the data set used, with its licence and split.
        init: How the weights were initialised (``imagenet``, a base model and its classes...).
        training_minutes: Wall time of training.
        notes: Anything else worth knowing (e.g. the machine the time was measured on).

    """

    recipe: dict[str, Any] = field(default_factory=dict, metadata=_PLAIN)
    data: dict[str, DataRecord | None] = field(default_factory=dict, metadata={"read": _read_data})
    init: dict[str, Any] = field(default_factory=dict, metadata=_PLAIN)
    training_minutes: float | None = field(default=None, metadata=_number(low=0.0))
    notes: str | None = field(default=None, metadata=_TEXT)


ACTIVATION_LIMIT = 1e6
"""Largest magnitude an int8 activation range may reach (calibrations measure at most a few hundred: the shape
arithmetic; a range of 1e30 would quantise every activation to one step, and the model would find nothing)."""


def _read_ranges(reader: _Reader, value: Any, where: str) -> dict[str, tuple[float, float]]:
    ranges = {}
    for name, pair in reader.mapping(value, where).items():
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise reader.error(f"{where}.{name}", f"must be [lowest, highest], not {pair!r:.60}")
        low, high = (
            reader.number(item, f"{where}.{name}", low=-ACTIVATION_LIMIT, high=ACTIVATION_LIMIT) for item in pair
        )
        if not low <= high:
            raise reader.error(f"{where}.{name}", f"lowest {low} is above highest {high}")
        ranges[name] = (float(low), float(high))
    if not ranges:
        raise reader.error(where, "is empty")
    return ranges


def _read_names(reader: _Reader, value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise reader.error(where, f"must be a list of names, not {value!r:.60}")
    return tuple(reader.text(item, f"{where}[{index}]") for index, item in enumerate(value))


@dataclass(frozen=True)
class Int8Calibration:
    """The activation ranges that let ONNX Runtime and OpenVINO run a network in int8 (``cytolens quantise``; see
    :mod:`cytolens.inference.int8`).

    Attributes:
        ranges: Per tensor of the network's ONNX export, its lowest and highest value on the calibration images.
        keep_float: Nodes left in float (the output heads).
        about: What the ranges were measured on (data set, split, images, size), free-form.

    """

    ranges: dict[str, tuple[float, float]] = field(metadata={"read": _read_ranges})
    keep_float: tuple[str, ...] = field(default=(), metadata={"read": _read_names})
    about: dict[str, Any] = field(default_factory=dict, metadata=_PLAIN)


def _plain(value: Any) -> Any:
    """A card value as plain JSON data (records as mappings, tuples as lists)."""
    if hasattr(value, "__dataclass_fields__"):
        return {item.name: _plain(getattr(value, item.name)) for item in fields(value)}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    """Everything needed to use a trained model's weights, and where they come from.

    Attributes:
        task: The task of ``architecture`` (``boxes``, ``points``, ``patches``).
        architecture: The registered builder (see :func:`cytolens.models.registry.architectures`).
        kwargs: Its builder arguments.
        classes: Class names in output order.
        thresholds: How outputs become cells (the task's registered thresholds type).
        input: The images the model expects.
        proximity: The proximity target (point models).
        patch: How patches are cut and viewed (patch classifiers).
        int8: Activation ranges for int8 inference in ONNX Runtime and OpenVINO (point FCNs, FCOS box detectors;
            ``None``: float).
        evaluation: How its figures are measured.
        report: What ``predict`` reports by default.
        provenance: Recipe, data, initialisation and training time.
        metrics: Figures measured on held-out data (free-form).
        notice: A notice shown with the model (e.g. research use only).
        cytolens_version: The cytolens that wrote the checkpoint.
        stored_half: Whether its floating-point weights are stored as float16.

    """

    task: str
    architecture: str
    kwargs: dict[str, Any]
    classes: tuple[str, ...]
    thresholds: Thresholds
    input: InputConfig = field(default_factory=InputConfig)
    proximity: Proximity | None = None
    patch: PatchGeometry | None = None
    int8: Int8Calibration | None = None
    evaluation: Evaluation = field(default_factory=Evaluation)
    report: Report = field(default_factory=Report)
    provenance: Provenance = field(default_factory=Provenance)
    metrics: dict[str, Any] = field(default_factory=dict, metadata=_PLAIN)
    notice: str | None = field(default=None, metadata=_TEXT)
    cytolens_version: str | None = field(default=None, metadata=_TEXT)
    stored_half: bool = field(default=False, metadata=_FLAG)

    def to_dict(self) -> dict[str, Any]:
        """The card as plain JSON data, in the layout :meth:`from_dict` reads (without an absent ``int8``, so that
        versions of cytolens from before it read float models' cards).
        """
        plain = _plain(self)
        if self.int8 is None:
            del plain["int8"]
        return plain

    def to_json(self) -> str:
        """The card as JSON text (non-finite figures as ``NaN``/``Infinity``, which Python's ``json`` reads)."""
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, meta: Any, source: str | Path) -> Self:
        """The card that ``meta`` (:meth:`to_dict`'s layout, or the old flat one) describes, every field checked.

        Args:
            meta: The card's data.
            source: The checkpoint it comes from, named in errors.

        Raises:
            ModelError: Naming ``source`` and the field, if ``meta`` is not a card cytolens can use: a required
                entry missing, an unknown entry, an unregistered architecture or one of another task, kwargs
                that are not a mapping, classes that are not distinct names, a number out of its range, a
                per-class score or a count ratio naming a class the model does not have...

        """
        source = Path(source)
        if not isinstance(meta, dict):
            raise ModelError(f"{source}: checkpoint metadata must be a mapping, not {type(meta).__name__}")
        meta, renamed = _upgrade(meta)
        missing = [key for key in REQUIRED if key not in meta]
        if missing:
            raise ModelError(f"{source}: checkpoint metadata lacks {', '.join(missing)}")
        known = [item.name for item in fields(cls)]
        unknown = [key for key in meta if key not in known]
        if unknown:
            listed = ", ".join(repr(key) for key in unknown)
            raise ModelError(f"{source}: checkpoint metadata holds unknown entries {listed:.100}")
        reader = _Reader(source, renamed)
        builders = architectures()
        architecture = meta["architecture"]
        if not isinstance(architecture, str) or architecture not in builders:
            raise reader.error("architecture", f"{architecture!r:.60} is not one of {', '.join(builders)}")
        task = builders[architecture].task
        if meta["task"] != task:
            raise reader.error("task", f"{meta['task']!r:.60} is not {task!r}, the task of {architecture}")
        kwargs = meta["kwargs"]
        if not isinstance(kwargs, dict) or not all(isinstance(key, str) for key in kwargs):
            raise reader.error("kwargs", f"must map argument names to values, not {kwargs!r:.60}")
        kwargs = reader.plain(kwargs, "kwargs")
        reader.classes = _read_classes(source, meta["classes"])
        kind = thresholds_type(task)
        defaults = kind.defaults(builders[architecture], kwargs)
        thresholds = reader.section(kind, meta.get("thresholds"), "thresholds", defaults)
        proximity, patch, int8 = meta.get("proximity"), meta.get("patch"), meta.get("int8")
        if int8 is not None and not (task == "points" or (task == "boxes" and architecture == "fcos")):
            raise reader.error("int8", f"is for point FCNs and FCOS box models only, not a {architecture} {task} model")
        return cls(
            task=task,
            architecture=architecture,
            kwargs=kwargs,
            classes=reader.classes,
            thresholds=thresholds,
            input=reader.section(InputConfig, meta.get("input"), "input"),
            proximity=None if proximity is None else reader.section(Proximity, proximity, "proximity"),
            patch=None if patch is None else reader.section(PatchGeometry, patch, "patch"),
            int8=None if int8 is None else reader.section(Int8Calibration, int8, "int8"),
            evaluation=reader.section(Evaluation, meta.get("evaluation"), "evaluation"),
            report=reader.section(Report, meta.get("report"), "report"),
            provenance=reader.section(Provenance, meta.get("provenance"), "provenance"),
            **{
                item.name: item.metadata["read"](reader, meta[item.name], item.name)
                for item in fields(cls)
                if "read" in item.metadata and meta.get(item.name) is not None  # metrics, notice...
            },
        )

    def with_thresholds(self, **changes: Any) -> Self:
        """The card with some thresholds changed (checked; ``None`` restores a default; ``tuned_on`` is cleared
        unless given, as the changed values were not tuned).

        Raises:
            CytolensError: If a name is not a threshold of the model's task, or a value is out of its range.

        """
        kind = type(self.thresholds)
        known = [item.name for item in fields(kind)]
        unknown = [name for name in changes if name not in known]
        if unknown:
            raise CytolensError(f"{self.task} models have no threshold {unknown[0]!r} (they have: {', '.join(known)})")
        reader = _Reader(None, classes=self.classes)
        defaults = kind.defaults(architectures()[self.architecture], self.kwargs)
        values = {**self.thresholds.to_dict(), "tuned_on": None, **changes}
        return replace(self, thresholds=reader.section(kind, values, "thresholds", defaults))


def _read_classes(source: Path, classes: Any) -> tuple[str, ...]:
    """``classes`` if it is a non-empty list of distinct names fit for classes (:class:`ClassNames`)."""
    if not isinstance(classes, list | tuple) or not classes:
        raise ModelError(f"{source}: metadata classes must be a non-empty list of names, not {classes!r:.60}")
    names = ClassNames()
    try:
        for name in classes:
            names.index(name, source, "metadata classes")
    except DataError as error:
        raise ModelError(str(error)) from None
    if len(names.names) < len(classes):
        raise ModelError(f"{source}: metadata classes names a class twice ({classes!r:.60})")
    return tuple(classes)


def _upgrade(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``meta`` with the entries of the old flat layout moved to their sections, and the moved fields' old names.

    An old entry wins over its section's field, so that flat changes merged into a card's data apply.
    An entry whose section is there but is not a mapping stays, for the check to name it.
    """
    meta, renamed = dict(meta), {}
    for old, (section, name) in _MOVED.items():
        if old in meta and isinstance(meta.get(section), dict | None):
            meta[section] = {**(meta.get(section) or {}), name: meta.pop(old)}
            renamed[f"{section}.{name}"] = old
    section, name = _OLD_RADIUS
    old = meta.get(section)
    if isinstance(old, dict) and name in old and isinstance(meta.get("evaluation"), dict | None):
        meta[section] = {key: value for key, value in old.items() if key != name}
        meta["evaluation"] = {**(meta.get("evaluation") or {}), "radius": old[name]}
        renamed["evaluation.radius"] = f"{section}.{name}"
    return meta, renamed


__all__ = [
    "BoxThresholds",
    "ColourStats",
    "DataRecord",
    "Evaluation",
    "InputConfig",
    "Int8Calibration",
    "ModelCard",
    "PointThresholds",
    "Provenance",
    "Proximity",
    "Report",
    "Thresholds",
    "register_thresholds",
    "thresholds_type",
]
