"""Training recipes: every choice of a training run in one YAML-loadable record, stored in the checkpoint.

A recipe holds the choices common to every task at its top level and the choices of its task in a
section named after the task (:data:`SECTIONS`)::

    task: points
    architecture: fcn-lite0
    lr: 0.003
    points:
      crop_size: 256
      ignore_unlabelled_cells: true

The earlier flat layout, every key at the top level, still loads (recipe files and the recipes stored in
earlier checkpoints): a top-level key of the task's section goes into the section, and keys of other
tasks' sections, which that layout carried for every task, are checked and left out.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn

from cytolens.errors import CytolensError, DataError
from cytolens.io.registry import FORMATS
from cytolens.io.text import read_yaml
from cytolens.io.validation import check_number
from cytolens.models.registry import architectures
from cytolens.training.stages import Stage

MIN_INPUT_SIZE = 32
"""Smallest training input side (crop size, stage ``max_size``): the networks' coarsest stride."""


@dataclass
class BoxSettings:
    """The ``boxes`` section of a recipe.

    Attributes:
        score_threshold: Default score threshold stored with the model for prediction.
        partial_data: More training images whose boxes miss some of their cells (spec or folder; ``None``:
            none), e.g. BCCD, which boxes about half of the red cells: their unlabelled cells (stained, in no
            box) are left out of the background loss. Images that ``data`` also holds, in any split, are left
            out of them (so that validation and test images stay unseen).
        partial_format: Annotation format of ``partial_data`` when it is not a spec file.
        partial_split: Split of ``partial_data`` to use (``None``: all its images).
        ignore_unlabelled_cells: The images of ``data`` too may miss some of their cells (as an annotation
            store's do): their unlabelled cells are left out of the background loss in training.

    """

    score_threshold: float = 0.3
    partial_data: str | None = None
    partial_format: str | None = None
    partial_split: str | None = None
    ignore_unlabelled_cells: bool = False


@dataclass
class PointSettings:
    """The ``points`` section of a recipe.

    Attributes:
        proximity_d: Distance (pixels) at which the proximity target reaches 0.
        proximity_a: Sharpness ``a`` of the proximity target.
        loss_lambda: Background weight ``λ`` of the proximity loss.
        crop_size: Side of the square training crops (a stage's ``max_size`` replaces it from that stage on).
        class_weight: Weight of the class cross-entropy next to the proximity loss.
        match_radius: Radius (pixels) at which a found centre matches a true one (for tuning ``ξ``).
        min_distance: Smallest distance (pixels) between two found centres.
        ignore_unlabelled_cells: Leave stained pixels far from every labelled centre out of the proximity loss
            and out of validation (for datasets that label only some cells of an image).
        stain_jitter: Strength of the HED stain jitter of training crops (:func:`cytolens.training.augment.hed_jitter`;
            0: none), for H&E from labs whose staining differs.
        aux_data: Auxiliary training data (spec or folder) mixed into every step (``None``: none).
        aux_format: Annotation format of ``aux_data`` when it is not a spec file.
        aux_split: Split of ``aux_data`` to use (``None``: all its images).
        aux_classes: Classes of ``aux_data`` to keep (``None``: all); boxes count by their centres.
        aux_scale: Resize factor of the auxiliary images, so that their cells match the target's size.
        aux_weight: ``γ`` of the loss ``γ·L_target + L_aux`` (used only with ``aux_data``).

    """

    proximity_d: float = 16.0
    proximity_a: float = 3.0
    loss_lambda: float = 5.0
    crop_size: int = 256
    class_weight: float = 1.0
    match_radius: float = 12.0
    min_distance: int = 6
    ignore_unlabelled_cells: bool = False
    stain_jitter: float = 0.0
    aux_data: str | None = None
    aux_format: str | None = None
    aux_split: str | None = None
    aux_classes: list[str] | None = None
    aux_scale: float = 1.0
    aux_weight: float = 1.0


@dataclass
class PatchSettings:
    """The ``patches`` section of a recipe: how patches are cut, augmented and sampled (:mod:`cytolens.data.patches`).

    Attributes:
        side: Side (pixels) of the square around each cell marked by a point (``None``: cells need boxes, or
            each image is one patch, as in crop folders).
        side_um: The same side in µm, converted with each image's µm/px (give ``side`` or ``side_um``).
        pad: Padding of a squared box, as a fraction of its side.
        touching: Cells whose centres lie closer than this many pixels form one multi-label patch around their
            cluster (``None``: every cell its own patch); needs ``multi_label``.
        single_only: Train on single-cell patches only (the clusters of ``touching`` are left out of training,
            kept in validation): the "single" training of touching-cell classifiers.
        size: Side of the network's input (a patch is resampled to it; a stage's ``max_size`` replaces it).
        max_angle: Training rotations are uniform in ``±max_angle`` degrees.
        max_shift: Training shifts of the patch centre are uniform in ``±max_shift`` pixels per axis (``None``:
            a tenth of each patch's side).
        flip: Mirror half of the training patches.
        colour_jitter: Strength of brightness, contrast, saturation and hue jitter (0: none, as stain carries
            the diagnosis).
        scale_jitter: Training patch sides are scaled by a factor uniform in ``1 ± scale_jitter`` (0: none, as
            size carries the diagnosis).
        balanced: Sample training patches with inverse class frequency (multi-label: of their rarest type).
        multi_label: One sigmoid per type (patches of several types) instead of one softmax.
        views: Test-time views written to the model card (see :func:`~cytolens.data.patches.test_time_views`).
        fast: The fast mode: the body stays as initialised, its features of every patch under ``fast_views``
            views are computed once (and cached on disk), and only the head is trained on them, for the
            recipe's epochs (at its ``lr``, ``weight_decay``, ``batch_size``; ``patience`` epochs without a lower
            validation loss stop it); see :mod:`cytolens.training.patch_fast`.
        fast_views: Training views per patch in the fast mode: the first of the test-time views (the patch, its
            mirror image, its rotations by 90°, then centre shifts by ``max_shift``), fixed so that their
            features can be cached (``max_angle``, ``flip`` and the jitters are for fine-tuning).

    """

    side: float | None = None
    side_um: float | None = None
    pad: float = 0.1
    touching: float | None = None
    single_only: bool = False
    size: int = 224
    max_angle: float = 180.0
    max_shift: float | None = None
    flip: bool = True
    colour_jitter: float = 0.0
    scale_jitter: float = 0.0
    balanced: bool = True
    multi_label: bool = False
    views: int = 1
    fast: bool = False
    fast_views: int = 8

    def conflict(self) -> str | None:
        """What makes these settings contradict each other, if anything."""
        if self.side is not None and self.side_um is not None:
            return "patches: give side (pixels) or side_um (µm), not both"
        if self.touching is not None and not self.multi_label:
            return "patches touching makes patches of several types: set multi_label: true"
        if self.single_only and self.touching is None:
            return "patches single_only leaves out the clusters of touching cells: give touching too"
        if max(self.views, self.fast_views if self.fast else 1) > 8 and self.max_shift == 0:
            return "patches views beyond 8 shift the patch centre by max_shift, which is 0"
        if self.fast and (self.colour_jitter or self.scale_jitter):
            return "patches fast caches the features of fixed views: colour_jitter and scale_jitter need fast: false"
        return None


SECTIONS: dict[str, type] = {"boxes": BoxSettings, "points": PointSettings, "patches": PatchSettings}
"""The settings section of each task; a recipe holds it under the task's name."""


@dataclass
class Recipe:
    """A training configuration: the choices common to every task, and the section of its task.

    Attributes:
        task: ``boxes``, ``points`` or ``patches``.
        architecture: A registered architecture name.
        kwargs: Builder arguments (backbone, FPN width, input size, thresholds...).
        data: A dataset spec file, or a folder/file read with ``format``.
        format: Annotation format when ``data`` is not a spec file.
        train_split: Split to train on.
        val_split: Split to validate on (``None``: no validation).
        init: ``imagenet``, ``none``, a bundled model name or a checkpoint path.
        stages: Freezing schedule and input sizes; ``epochs`` is their sum.
        batch_size: Images per step.
        lr: Base learning rate.
        weight_decay: AdamW weight decay (none on norms and biases).
        warmup_steps: Linear warm-up steps.
        pretrained_lr_factor: Learning-rate factor on pretrained backbone blocks.
        grad_clip: Gradient-norm clip.
        ema_decay: Decay of the exponential moving average of the weights (0 disables it).
        val_every: Validate every this many epochs.
        patience: Early-stopping patience in validations (``None``: no early stopping).
        seed: Random seed.
        num_workers: Data-loading worker processes.
        keep: ``last`` (the final weights) or ``best`` (the weights scoring highest on the validation figure).
        boxes: The settings of the ``boxes`` task (its defaults when the task is ``boxes`` and none are given).
        points: The settings of the ``points`` task (likewise).
        patches: The settings of the ``patches`` task (likewise).

    Raises:
        CytolensError: If a section of another task than ``task`` is given.

    """

    task: str = "boxes"
    architecture: str = "fcos"
    kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = ""
    format: str | None = None
    train_split: str | None = "train"
    val_split: str | None = "val"
    init: str = "imagenet"
    stages: list[Stage] = field(default_factory=lambda: [Stage(freeze_blocks=0, epochs=10)])
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 150
    pretrained_lr_factor: float = 1.0
    grad_clip: float = 10.0
    ema_decay: float = 0.998
    val_every: int = 1
    patience: int | None = None
    seed: int = 0
    num_workers: int = 0
    keep: str = "last"
    boxes: BoxSettings | None = None
    points: PointSettings | None = None
    patches: PatchSettings | None = None

    def __post_init__(self) -> None:
        others = [name for name in SECTIONS if name != self.task and getattr(self, name) is not None]
        if others:
            raise CytolensError(f"a {self.task} recipe takes no {others[0]} settings")
        if self.task in SECTIONS and getattr(self, self.task) is None:
            setattr(self, self.task, SECTIONS[self.task]())

    @property
    def epochs(self) -> int:
        """Total epochs over all stages."""
        return sum(stage.epochs for stage in self.stages)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for checkpoints and logs): the common keys and the task's section."""
        values = asdict(self)
        return {key: value for key, value in values.items() if not (key in SECTIONS and value is None)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str | Path | None = None) -> Recipe:
        """Build from plain data, checking every value (see :func:`checked_values`).

        Args:
            values: Recipe keys and values (stages as mappings or :class:`Stage`, the task's section as a mapping
                or its dataclass), in the sectioned or the flat layout.
            source: The recipe file, named in errors; ``None`` when the values come from elsewhere.

        Raises:
            DataError: If a key is unknown or a value is unusable, naming ``source``.
            CytolensError: Likewise when ``source`` is ``None``.

        """
        return cls(**checked_values(values, source))

    @classmethod
    def from_yaml(cls, path: str | Path) -> Recipe:
        """Load a recipe YAML file; relative paths (``data``, ``aux_data``, ``partial_data``) are taken relative to it
        (a database URL, ``scheme://...``, stays as written).

        Raises:
            DataError: Naming the file, if it cannot be read as YAML or a key or value is unusable.

        """
        path = Path(path)
        values = read_yaml(path, "recipe") or {}
        if not isinstance(values, dict):
            raise DataError(path, "a recipe must be a mapping of recipe keys to values")
        for part in (values, *(values.get(task) for task in SECTIONS)):
            if not isinstance(part, dict):
                continue
            for key in _PATHS:
                value = part.get(key)
                if isinstance(value, str) and value and "://" not in value and not Path(value).is_absolute():
                    part[key] = str((path.parent / part[key]).resolve())
        return cls.from_dict(values, path)


_NUMBERS: dict[str, dict[str, Any]] = {
    "batch_size": {"integer": True, "low": 1},
    "lr": {"low": 0, "low_open": True},
    "weight_decay": {"low": 0},
    "warmup_steps": {"integer": True, "low": 0},
    "pretrained_lr_factor": {"low": 0},
    "grad_clip": {"low": 0},
    "ema_decay": {"low": 0, "high": 1, "high_open": True},
    "val_every": {"integer": True, "low": 1},
    "patience": {"integer": True, "low": 1},
    "seed": {"integer": True, "low": 0, "high": 2**32 - 1},
    "score_threshold": {"low": 0, "high": 1},
    "num_workers": {"integer": True, "low": 0},
    "aux_scale": {"low": 0, "low_open": True},
    "aux_weight": {"low": 0},
    "proximity_d": {"low": 0, "low_open": True},
    "proximity_a": {"low": 0, "low_open": True},
    "loss_lambda": {"low": 0},
    "crop_size": {"integer": True, "low": MIN_INPUT_SIZE},
    "class_weight": {"low": 0},
    "stain_jitter": {"low": 0, "high": 1, "high_open": True},
    "match_radius": {"low": 0, "low_open": True},
    "min_distance": {"integer": True, "low": 1},
    "side": {"low": 1},
    "side_um": {"low": 0, "low_open": True},
    "pad": {"low": 0, "high": 4},
    "touching": {"low": 0, "low_open": True},
    "size": {"integer": True, "low": MIN_INPUT_SIZE},
    "max_angle": {"low": 0, "high": 180},
    "max_shift": {"low": 0},
    "colour_jitter": {"low": 0},
    "scale_jitter": {"low": 0, "high": 1, "high_open": True},
    "views": {"integer": True, "low": 1, "high": 12},
    "fast_views": {"integer": True, "low": 1, "high": 12},
}
"""Ranges of the numeric recipe and section keys (arguments of :func:`~cytolens.io.validation.check_number`)."""
_OPTIONAL_NUMBERS = ("patience", "side", "side_um", "touching", "max_shift")
_TEXT = ("data", "init")
_OPTIONAL_TEXT = ("train_split", "val_split", "aux_data", "aux_split", "partial_data", "partial_split")
_FORMATS = ("format", "aux_format", "partial_format")
_FLAGS = ("ignore_unlabelled_cells", "single_only", "flip", "balanced", "multi_label", "fast")
_CLASS_LISTS = ("aux_classes",)
_PATHS = ("data", "aux_data", "partial_data")
"""Keys holding paths, taken relative to the recipe file."""
_STAGE_NUMBERS: dict[str, dict[str, Any]] = {
    "freeze_blocks": {"integer": True, "low": 0},
    "epochs": {"integer": True, "low": 1},
    "max_size": {"integer": True, "low": MIN_INPUT_SIZE},
}
_KEEP = ("last", "best")


def _refuse(source: str | Path | None, problem: str) -> NoReturn:
    if source is None:
        raise CytolensError(problem)
    raise DataError(source, problem)


def _stages(value: Any, source: str | Path | None) -> list[Stage]:
    if not isinstance(value, list) or not value:
        _refuse(source, f"stages must be a non-empty list of stages, not {value!r}")
    stages = []
    for index, stage in enumerate(value, 1):
        stage = asdict(stage) if isinstance(stage, Stage) else stage
        if not isinstance(stage, dict) or "epochs" not in stage or set(stage) - set(_STAGE_NUMBERS):
            _refuse(source, f"stage {index} must be a mapping of freeze_blocks, epochs, max_size, not {stage!r}")
        numbers = {
            key: check_number(number, f"stage {index} {key}", source, **_STAGE_NUMBERS[key])
            for key, number in stage.items()
            if number is not None or key != "max_size"
        }
        stages.append(Stage(**{"freeze_blocks": 0, **numbers}))
    return stages


def _kwargs(value: Any, architecture: str, task: str, source: str | Path | None) -> dict[str, Any]:
    """Builder arguments checked against the builder's signature: known names, values of its defaults' types."""
    if not isinstance(value, dict):
        _refuse(source, f"kwargs must be a mapping of {architecture} builder arguments, not {value!r}")
    parameters = inspect.signature(architectures(task)[architecture].builder).parameters
    known = {name: p.default for name, p in parameters.items() if name not in ("num_classes", "weights")}
    checked = {}
    for key, given in value.items():
        if key not in known:
            _refuse(source, f"kwargs: {architecture} takes no argument {key!r} (it takes {', '.join(known)})")
        default = known[key]
        if isinstance(default, bool) and not isinstance(given, bool):
            _refuse(source, f"kwargs {key} must be true or false, not {given!r}")
        if isinstance(default, int | float) and not isinstance(default, bool):
            given = check_number(given, f"kwargs {key}", source, low=0, integer=isinstance(default, int))
        if isinstance(default, str) and not isinstance(given, str):
            _refuse(source, f"kwargs {key} must be text, not {given!r}")
        if isinstance(default, tuple):
            if not isinstance(given, list | tuple) or not given:
                _refuse(source, f"kwargs {key} must be a list of numbers, not {given!r}")
            given = [check_number(item, f"kwargs {key}", source, low=1, integer=True) for item in given]
        checked[key] = given
    return checked


def _checked(key: str, value: Any, what: str, source: str | Path | None) -> Any:
    """A recipe or section value checked by the rule of its ``key``; ``what`` names it in errors."""
    if key in _NUMBERS:
        if value is None and key in _OPTIONAL_NUMBERS:
            return None
        if isinstance(value, str) and not _NUMBERS[key].get("integer"):
            with contextlib.suppress(ValueError):  # YAML 1.1 reads 1e-3 as text; other text is refused below
                value = float(value)
        return check_number(value, what, source, **_NUMBERS[key])
    if key in (*_TEXT, *_OPTIONAL_TEXT, *_FORMATS, "keep"):
        if not (isinstance(value, str) or (value is None and key in (*_OPTIONAL_TEXT, *_FORMATS))):
            _refuse(source, f"{what} must be text, not {value!r}")
        if key in _FORMATS and value is not None and value not in FORMATS:
            _refuse(source, f"unknown {what} {value!r}; choose one of: {', '.join(FORMATS)}")
        if key == "keep" and value not in _KEEP:
            _refuse(source, f"{what} must be one of {', '.join(_KEEP)}, not {value!r}")
    if key in _FLAGS and not isinstance(value, bool):
        _refuse(source, f"{what} must be true or false, not {value!r}")
    names = isinstance(value, list) and all(isinstance(name, str) for name in value)
    if key in _CLASS_LISTS and not (value is None or names):
        _refuse(source, f"{what} must be a list of class names, not {value!r}")
    return value


def _section(values: dict[str, Any], task: str, source: str | Path | None) -> Any:
    """The checked section of ``task``, taken out of ``values`` with the keys of every section.

    The section comes from ``values[task]`` and, in the flat layout, from top-level keys; top-level keys of
    other tasks' sections are checked and left out; a section of another task is refused.
    """
    settings = SECTIONS[task]
    for other in SECTIONS:
        if other != task and values.pop(other, None) is not None:
            _refuse(source, f"a {task} recipe takes no {other} settings")
    given = values.pop(task, None)
    given = asdict(given) if isinstance(given, settings) else {} if given is None else given
    if not isinstance(given, dict):
        _refuse(source, f"{task} must be a mapping of {task} settings, not {given!r}")
    unknown = sorted(set(given) - {item.name for item in fields(settings)}, key=str)
    if unknown:
        _refuse(source, f"unknown {task} settings: {', '.join(map(str, unknown))}")
    checked = {key: _checked(key, value, f"{task} {key}", source) for key, value in given.items()}
    owners = {item.name: name for name, kind in SECTIONS.items() for item in fields(kind)}
    for key in [key for key in values if key in owners]:  # the flat layout
        value = _checked(key, values.pop(key), key, source)
        if owners[key] == task:
            if key in checked:
                _refuse(source, f"{key} is given twice: at the top level and in {task}")
            checked[key] = value
    section = settings(**checked)
    if isinstance(section, PatchSettings) and (problem := section.conflict()):
        _refuse(source, problem)
    return section


def checked_values(values: dict[str, Any], source: str | Path | None = None) -> dict[str, Any]:
    """Recipe values with every key known and every value usable: the one check of recipes, wherever they come from.

    Numbers go through :func:`~cytolens.io.validation.check_number` with the ranges of :data:`_NUMBERS`
    (a string float such as ``1e-3``, which YAML 1.1 reads as text, is taken as its number); flags must be
    real booleans; ``task``, ``architecture`` and ``kwargs`` are checked against the architecture registry
    (a recipe naming no architecture takes the task's first), formats against the format registry. The
    task's section may be given as a mapping under the task's name or, in the flat layout, as top-level keys
    (see the module's docstring).

    Args:
        values: Recipe keys and values.
        source: The recipe file, named in errors (``None``: the errors name no file).

    Returns:
        The values, numbers as ``int`` or ``float``, stages as :class:`Stage`, the task's section as its
        dataclass (defaults filled in) under the task's name.

    Raises:
        DataError: If a key is unknown or a value unusable, naming ``source``.
        CytolensError: Likewise when ``source`` is ``None``.

    """
    sections = {item.name for kind in SECTIONS.values() for item in fields(kind)}
    unknown = sorted(set(values) - {item.name for item in fields(Recipe)} - sections, key=str)
    if unknown:
        _refuse(source, f"unknown recipe keys: {', '.join(map(str, unknown))}")
    values = dict(values)
    default = Recipe()
    task = values.get("task", default.task)
    tasks = sorted({architecture.task for architecture in architectures().values()})
    if task not in tasks:
        _refuse(source, f"unknown task {task!r}; choose one of: {', '.join(tasks)}")
    served = architectures(task)
    if "architecture" not in values and default.architecture not in served:
        values["architecture"] = next(iter(served))  # the task's first architecture
    architecture = values.get("architecture", default.architecture)
    if not isinstance(architecture, str) or architecture not in architectures(task):
        _refuse(
            source,
            f"architecture {architecture!r} does not serve task {task!r} (choose: {', '.join(architectures(task))})",
        )
    section = _section(values, task, source)
    for key in [key for key in values if key not in ("task", "architecture", "kwargs", "stages")]:
        values[key] = _checked(key, values[key], key, source)
    values["kwargs"] = _kwargs(values.get("kwargs", {}), architecture, task, source)
    if isinstance(section, PatchSettings) and "multi_label" in values["kwargs"]:
        _refuse(source, "kwargs multi_label: set multi_label in the patches section instead")
    if "stages" in values:
        values["stages"] = _stages(values["stages"], source)
    values[task] = section
    return values
