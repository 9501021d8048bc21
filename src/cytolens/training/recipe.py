"""Training recipes: every choice of a training run in one YAML-loadable record, stored in the checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from cytolens.errors import DataError
from cytolens.training.transfer import Stage


@dataclass
class Recipe:
    """A training configuration.

    Attributes:
        task: ``boxes`` or ``points``.
        architecture: A registered architecture name.
        kwargs: Builder arguments (backbone, FPN width, input size, thresholds...).
        data: A dataset spec file, or a folder/file read with ``format``.
        format: Annotation format when ``data`` is not a spec file.
        train_split: Split to train on.
        val_split: Split to validate on (``None``: no validation).
        init: ``imagenet``, ``none``, a bundled model name or a checkpoint path.
        stages: Freezing schedule; ``epochs`` is their sum.
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
        score_threshold: Default score threshold stored with the model for prediction.
        num_workers: Data-loading worker processes.
        keep: ``last`` (the final weights) or ``best`` (the weights scoring highest on the validation figure).
        aux_data: Auxiliary training data (spec or folder) mixed into every step (``None``: none).
        aux_format: Annotation format of ``aux_data`` when it is not a spec file.
        aux_split: Split of ``aux_data`` to use (``None``: all its images).
        aux_classes: Classes of ``aux_data`` to keep (``None``: all); boxes count by their centres.
        aux_scale: Resize factor of the auxiliary images, so that their cells match the target's size.
        aux_weight: ``γ`` of the loss ``γ·L_target + L_aux`` (used only with ``aux_data``).
        proximity_d: Points: distance (pixels) at which the proximity target reaches 0.
        proximity_a: Points: sharpness ``a`` of the proximity target.
        loss_lambda: Points: background weight ``λ`` of the proximity loss.
        crop_size: Points: side of the square training crops.
        class_weight: Points: weight of the class cross-entropy next to the proximity loss.
        match_radius: Points: radius (pixels) at which a found centre matches a true one (for tuning ``ξ``).
        min_distance: Points: smallest distance (pixels) between two found centres.
        ignore_unlabelled_cells: Points: leave stained pixels far from every labelled centre out of the
            proximity loss and out of validation (for datasets that label only some cells of an image).

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
    score_threshold: float = 0.3
    num_workers: int = 0
    keep: str = "last"
    aux_data: str | None = None
    aux_format: str | None = None
    aux_split: str | None = None
    aux_classes: list[str] | None = None
    aux_scale: float = 1.0
    aux_weight: float = 1.0
    proximity_d: float = 16.0
    proximity_a: float = 3.0
    loss_lambda: float = 5.0
    crop_size: int = 256
    class_weight: float = 1.0
    match_radius: float = 12.0
    min_distance: int = 6
    ignore_unlabelled_cells: bool = False

    @property
    def epochs(self) -> int:
        """Total epochs over all stages."""
        return sum(stage.epochs for stage in self.stages)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for checkpoints and logs)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str | Path = "recipe") -> Recipe:
        """Build from plain data, rejecting unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DataError(source, f"unknown recipe keys: {', '.join(unknown)}")
        values = dict(values)
        for item in fields(cls):
            value = values.get(item.name)
            if isinstance(value, str) and item.type in ("float", "float | None"):
                try:
                    values[item.name] = float(value)  # YAML reads 1e-3 as a string
                except ValueError:
                    raise DataError(source, f"{item.name} must be a number, not {value!r}") from None
        if "stages" in values:
            try:
                values["stages"] = [Stage(**stage) if isinstance(stage, dict) else stage for stage in values["stages"]]
            except TypeError as error:
                raise DataError(source, f"bad stage ({error}); a stage has freeze_blocks, epochs, max_size") from None
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Recipe:
        """Load a recipe YAML file; relative ``data`` and ``aux_data`` paths are taken relative to the file."""
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "recipe file not found")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise DataError(path, f"invalid YAML ({str(error).splitlines()[0]})") from None
        if not isinstance(values, dict):
            raise DataError(path, "a recipe must be a mapping of recipe keys to values")
        for key in ("data", "aux_data"):
            if values.get(key) and not Path(values[key]).is_absolute():
                values[key] = str((path.parent / values[key]).resolve())
        return cls.from_dict(values, path)
