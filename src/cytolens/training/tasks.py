"""What each task plugs into the shared training loop: its Lightning module, dataset, collate and card sections."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
from torch import nn
from torch.utils.data import ConcatDataset, Sampler, default_collate
from torch.utils.data import Dataset as TorchDataset

from cytolens.data.annotations import Dataset
from cytolens.errors import CytolensError
from cytolens.models.card import BoxThresholds, Evaluation, PatchGeometry, Proximity, Thresholds
from cytolens.training.recipe import Recipe
from cytolens.training.stages import InputSize, short_side


@dataclass(frozen=True)
class CardSections:
    """What a task writes into the model card of a model it trained (:class:`~cytolens.models.card.ModelCard`).

    Attributes:
        size: The network's input size as trained (width, height).
        thresholds: How outputs become cells (the task's thresholds type, as last tuned).
        proximity: The proximity target (point models).
        evaluation: How the model's figures are measured.
        patch: How patches are cut and viewed (patch classifiers).
        mpp: The µm/px that the sections' pixel values are stated at, when the task fixes it (``None``: the
            training images' common µm/px, if they share one).
        tile_size: The card's ``input.tile_size``, when the task fixes it: box models, the longer side of their
            largest training field, which training resized to ``size`` (see
            :meth:`~cytolens.inference.boxes.BoxTiling.of`).

    """

    size: tuple[int, int]
    thresholds: Thresholds
    proximity: Proximity | None = None
    evaluation: Evaluation = field(default_factory=Evaluation)
    patch: PatchGeometry | None = None
    mpp: float | None = None
    tile_size: int | None = None


def _no_sampler(dataset: TorchDataset, recipe: Recipe) -> None:
    return None


def _no_kwargs(recipe: Recipe) -> dict[str, Any]:
    return {}


def _loop(recipe: Recipe) -> None:
    return None


Fit = Callable[[pl.LightningModule, Recipe, Dataset, "Dataset | None", InputSize, bool], dict[str, Any]]
"""``(module, recipe, train_data, val_data, input_size, progress) -> validation figures``: a fit of the module's
model in place, instead of Lightning's loop."""


@dataclass(frozen=True)
class TaskComponents:
    """The task-specific parts of training.

    Attributes:
        base_size: ``recipe -> int``: the input size before any stage sets one (see
            :class:`~cytolens.training.stages.InputSize`).
        module: ``(model, recipe, train_data, input_size) -> LightningModule``.
        dataset: ``(data, recipe, input_size, train) -> torch Dataset``.
        collate: Batch collation function.
        describe: ``(module, recipe, train_data, input_size) -> CardSections``: the card sections of the task, as
            the module stands (called at every export, so that thresholds tuned during validation are written).
        final_kwargs: ``input_size -> dict`` of builder arguments that the schedule changes (e.g. final input size).
        monitor: The validation figure that early stopping watches.
        sampler: ``(train_set, recipe) -> Sampler | None``: how training samples are drawn (``None``: shuffled).
        builder_kwargs: ``recipe -> dict`` of builder arguments that the task's settings fix (over the recipe's
            ``kwargs``).
        fit: ``recipe -> Fit | None``: the task's own fit when the recipe asks for one instead of Lightning's loop
            (the patches fast mode); ``None``: the loop.

    """

    base_size: Callable[[Recipe], int]
    module: Callable[[nn.Module, Recipe, Dataset, InputSize], pl.LightningModule]
    dataset: Callable[[Dataset, Recipe, InputSize, bool], TorchDataset]
    collate: Callable
    describe: Callable[[pl.LightningModule, Recipe, Dataset, InputSize], CardSections]
    final_kwargs: Callable[[InputSize], dict[str, Any]]
    monitor: str
    sampler: Callable[[TorchDataset, Recipe], Sampler | None] = _no_sampler
    builder_kwargs: Callable[[Recipe], dict[str, Any]] = _no_kwargs
    fit: Callable[[Recipe], Fit | None] = _loop


def _box_components() -> TaskComponents:
    from cytolens.training.box_data import BoxDataset, check_partial_labels, collate, partially_labelled
    from cytolens.training.detection_module import DetectionModule

    def base_size(recipe: Recipe) -> int:
        return int(recipe.kwargs.get("max_size", 416))

    def module(model: nn.Module, recipe: Recipe, data: Dataset, size: InputSize) -> pl.LightningModule:
        return DetectionModule(
            model, size, recipe.lr, recipe.weight_decay, recipe.warmup_steps, recipe.pretrained_lr_factor
        )

    def dataset(data: Dataset, recipe: Recipe, size: InputSize, train: bool) -> TorchDataset:
        partial_labels = train and recipe.boxes.ignore_unlabelled_cells
        if partial_labels:
            check_partial_labels(recipe, "ignore_unlabelled_cells")
        complete = BoxDataset(data, size, train, ignore_unlabelled=partial_labels)
        if not (train and recipe.boxes.partial_data):
            return complete
        partial = partially_labelled(recipe, list(data.classes))
        return ConcatDataset([complete, BoxDataset(partial, size, train, ignore_unlabelled=True)])

    def final_kwargs(size: InputSize) -> dict[str, Any]:
        return {"max_size": size.final, "min_size": short_side(size.final)}

    def describe(module: pl.LightningModule, recipe: Recipe, data: Dataset, size: InputSize) -> CardSections:
        thresholds = BoxThresholds(score=recipe.boxes.score_threshold, nms=recipe.kwargs.get("nms_thresh", 0.6))
        largest = max(max(image.size) for image in data.images)  # box_pipeline resized every field to the input
        return CardSections((size.final, short_side(size.final)), thresholds, tile_size=largest)

    return TaskComponents(base_size, module, dataset, collate, describe, final_kwargs, "val/map50")


def _point_components() -> TaskComponents:
    from cytolens.data.transforms import boxes_to_points
    from cytolens.training.point_data import PointDataset, WithAuxiliary, auxiliary_data, collate
    from cytolens.training.point_module import PointModule

    def base_size(recipe: Recipe) -> int:
        return recipe.points.crop_size

    def module(model: nn.Module, recipe: Recipe, data: Dataset, size: InputSize) -> pl.LightningModule:
        settings = recipe.points
        return PointModule(
            model,
            data.classes,
            lr=recipe.lr,
            weight_decay=recipe.weight_decay,
            warmup_steps=recipe.warmup_steps,
            pretrained_lr_factor=recipe.pretrained_lr_factor,
            loss_lambda=settings.loss_lambda,
            class_weight=settings.class_weight,
            aux_weight=settings.aux_weight,
            match_radius=settings.match_radius,
            min_distance=settings.min_distance,
        )

    def dataset(data: Dataset, recipe: Recipe, size: InputSize, train: bool) -> TorchDataset:
        settings = recipe.points

        def points(source: Dataset, scale: float = 1.0) -> PointDataset:
            return PointDataset(
                source,
                settings.proximity_d,
                settings.proximity_a,
                size,
                train,
                scale,
                settings.ignore_unlabelled_cells,
                settings.stain_jitter,
            )

        target = points(boxes_to_points(data))  # box data (e.g. BCCD) trains on the box centres
        if not (train and settings.aux_data):
            return target
        return WithAuxiliary(target, points(auxiliary_data(settings, data.classes), settings.aux_scale))

    def describe(module: pl.LightningModule, recipe: Recipe, data: Dataset, size: InputSize) -> CardSections:
        settings = recipe.points
        return CardSections(
            (size.final, size.final),  # training crops (a stage's max_size changes the crop size)
            module.tuned_thresholds(),
            Proximity(d=settings.proximity_d, a=settings.proximity_a),
            Evaluation(radius=settings.match_radius),
        )

    return TaskComponents(base_size, module, dataset, collate, describe, lambda size: {}, "val/f1")


def _patch_components() -> TaskComponents:
    from cytolens.training.patch_data import PatchDataset, balanced_sampler, patch_geometry
    from cytolens.training.patch_fast import fit_head
    from cytolens.training.patch_module import PatchModule

    def base_size(recipe: Recipe) -> int:
        return recipe.patches.size

    def module(model: nn.Module, recipe: Recipe, data: Dataset, size: InputSize) -> pl.LightningModule:
        return PatchModule(
            model,
            data.classes,
            multi_label=recipe.patches.multi_label,
            lr=recipe.lr,
            weight_decay=recipe.weight_decay,
            warmup_steps=recipe.warmup_steps,
            pretrained_lr_factor=recipe.pretrained_lr_factor,
        )

    def dataset(data: Dataset, recipe: Recipe, size: InputSize, train: bool) -> TorchDataset:
        return PatchDataset(data, recipe.patches, size, train)

    def describe(module: pl.LightningModule, recipe: Recipe, data: Dataset, size: InputSize) -> CardSections:
        geometry, mpp = patch_geometry(data, recipe.patches)
        return CardSections((size.final, size.final), module.tuned_thresholds(), patch=geometry, mpp=mpp)

    def sampler(train_set: TorchDataset, recipe: Recipe) -> Sampler | None:
        return balanced_sampler(train_set) if recipe.patches.balanced else None

    return TaskComponents(
        base_size,
        module,
        dataset,
        default_collate,
        describe,
        lambda size: {},
        "val/macro_f1",
        sampler,
        lambda recipe: {"multi_label": recipe.patches.multi_label},
        lambda recipe: fit_head if recipe.patches.fast else None,
    )


_TASKS: dict[str, Callable[[], TaskComponents]] = {
    "boxes": _box_components,
    "points": _point_components,
    "patches": _patch_components,
}


def task_components(task: str) -> TaskComponents:
    """The training components of ``task``.

    Raises:
        CytolensError: If the task is unknown.

    """
    if task not in _TASKS:
        raise CytolensError(f"unknown task {task!r}; choose one of: {', '.join(_TASKS)}")
    return _TASKS[task]()
