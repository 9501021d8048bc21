"""What each task plugs into the shared training loop: its Lightning module, dataset, collate and metadata."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
from torch import nn
from torch.utils.data import Dataset as TorchDataset

from cytolens.data.annotations import Dataset
from cytolens.errors import CytolensError
from cytolens.training.recipe import Recipe


@dataclass(frozen=True)
class TaskComponents:
    """The task-specific parts of training.

    Attributes:
        module: ``(model, recipe, train_data) -> LightningModule``.
        dataset: ``(data, recipe, module, train) -> torch Dataset``.
        collate: Batch collation function.
        describe: ``(module, train_data, recipe) -> dict`` of checkpoint metadata (input size, mpp, thresholds).
        final_kwargs: ``recipe -> dict`` of builder arguments that the schedule changes (e.g. final input size).
        monitor: The validation figure that early stopping watches.

    """

    module: Callable[[nn.Module, Recipe, Dataset], pl.LightningModule]
    dataset: Callable[[Dataset, Recipe, pl.LightningModule, bool], TorchDataset]
    collate: Callable
    describe: Callable[[pl.LightningModule, Dataset, Recipe], dict[str, Any]]
    final_kwargs: Callable[[Recipe], dict[str, Any]]
    monitor: str


def _box_components() -> TaskComponents:
    from cytolens.training.box_data import BoxDataset, collate
    from cytolens.training.detection_module import DetectionModule

    def input_max(recipe: Recipe) -> int:
        sizes = [stage.max_size for stage in recipe.stages if stage.max_size]
        return sizes[-1] if sizes else int(recipe.kwargs.get("max_size", 416))

    def module(model: nn.Module, recipe: Recipe, data: Dataset) -> pl.LightningModule:
        return DetectionModule(model, recipe.lr, recipe.weight_decay, recipe.warmup_steps, recipe.pretrained_lr_factor)

    def dataset(data: Dataset, recipe: Recipe, module: pl.LightningModule, train: bool) -> TorchDataset:
        first = next((stage.max_size for stage in recipe.stages if stage.max_size), None)
        return BoxDataset(data, first or input_max(recipe), train)

    def final_kwargs(recipe: Recipe) -> dict[str, Any]:
        size = input_max(recipe)
        return {"max_size": size, "min_size": size * 3 // 4}

    def describe(module: pl.LightningModule, data: Dataset, recipe: Recipe) -> dict[str, Any]:
        size = input_max(recipe)
        mpps = {image.mpp for image in data.images}
        return {
            "input_size": [size, size * 3 // 4],
            "mpp": mpps.pop() if len(mpps) == 1 else None,
            "thresholds": {"score": recipe.score_threshold, "nms": recipe.kwargs.get("nms_thresh", 0.6)},
        }

    return TaskComponents(module, dataset, collate, describe, final_kwargs, "val/map50")


def _point_components() -> TaskComponents:
    from cytolens.data.transforms import boxes_to_points
    from cytolens.training.point_data import PointDataset, WithAuxiliary, auxiliary_data, collate
    from cytolens.training.point_module import PointModule

    def module(model: nn.Module, recipe: Recipe, data: Dataset) -> pl.LightningModule:
        return PointModule(
            model,
            data.classes,
            lr=recipe.lr,
            weight_decay=recipe.weight_decay,
            warmup_steps=recipe.warmup_steps,
            pretrained_lr_factor=recipe.pretrained_lr_factor,
            loss_lambda=recipe.loss_lambda,
            class_weight=recipe.class_weight,
            aux_weight=recipe.aux_weight,
            match_radius=recipe.match_radius,
            min_distance=recipe.min_distance,
        )

    def dataset(data: Dataset, recipe: Recipe, module: pl.LightningModule, train: bool) -> TorchDataset:
        def points(source: Dataset, scale: float = 1.0) -> PointDataset:
            return PointDataset(
                source, recipe.proximity_d, recipe.proximity_a, recipe.crop_size, train, scale,
                recipe.ignore_unlabelled_cells,
            )

        target = points(boxes_to_points(data))  # box data (e.g. BCCD) trains on the box centres
        if not (train and recipe.aux_data):
            return target
        return WithAuxiliary(target, points(auxiliary_data(recipe, data.classes), recipe.aux_scale))

    def describe(module: pl.LightningModule, data: Dataset, recipe: Recipe) -> dict[str, Any]:
        mpps = {image.mpp for image in data.images}
        crop = ([stage.max_size for stage in recipe.stages if stage.max_size] or [recipe.crop_size])[-1]
        return {
            "input_size": [crop, crop],  # training crops (a stage's max_size changes the crop size)
            "mpp": mpps.pop() if len(mpps) == 1 else None,
            "thresholds": module.tuned_thresholds(),
            "proximity": {"d": recipe.proximity_d, "a": recipe.proximity_a},
        }

    return TaskComponents(module, dataset, collate, describe, lambda recipe: {}, "val/f1")


_TASKS: dict[str, Callable[[], TaskComponents]] = {"boxes": _box_components, "points": _point_components}


def task_components(task: str) -> TaskComponents:
    """The training components of ``task``.

    Raises:
        CytolensError: If the task is unknown.

    """
    if task not in _TASKS:
        raise CytolensError(f"unknown task {task!r}; choose one of: {', '.join(_TASKS)}")
    return _TASKS[task]()
