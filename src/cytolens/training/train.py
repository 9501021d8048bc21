"""``train(recipe, out)``: the one training entry of every task, on PyTorch Lightning.

It writes, under ``out``: ``checkpoints/`` (Lightning checkpoints for ``--resume``, the last one saved
every epoch), ``logs/`` (CSV metrics), and ``model.pt``, the self-describing cytolens checkpoint,
refreshed at every validation and at the end. A task may fit without the loop when its recipe asks for it
(the patches fast mode, :mod:`cytolens.training.patch_fast`): only ``model.pt`` is written then. A folder
holding an earlier run is continued (``resume``) or replaced as a whole (``exist_ok``), never mixed with a
new one. Resuming reads ``last.ckpt`` through
:func:`cytolens.models.checkpoint.load_plain`, so a planted or damaged file is refused, never run.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, WeightAveraging
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins import TorchCheckpointIO
from torch.utils.data import DataLoader

from cytolens.data.annotations import Dataset
from cytolens.errors import CytolensError, DataError, ModelError
from cytolens.inference.device import resolve_device
from cytolens.io.spec import load_data, split_of
from cytolens.io.validation import check_number
from cytolens.models.card import DataRecord, InputConfig, ModelCard, Provenance
from cytolens.models.checkpoint import load_plain, save_checkpoint, update_metadata
from cytolens.models.colour import dataset_colour
from cytolens.models.registry import architectures
from cytolens.training.averaging import WarmEMA
from cytolens.training.init import initial_model
from cytolens.training.lightning_messages import lightning_at_debug
from cytolens.training.recipe import Recipe
from cytolens.training.stages import InputSize, StageSchedule
from cytolens.training.tasks import CardSections, task_components

log = logging.getLogger(__name__)

RUN_ENTRIES = ("checkpoints", "logs", "model.pt")
"""What a run writes in its folder (``exist_ok`` removes them before a new run)."""


class PlainCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, resuming through :func:`~cytolens.models.checkpoint.load_plain`.

    A training checkpoint holds only tensors and plain data, so it is read with ``weights_only=True`` and its
    zip CRCs checked: a file built to run code, or a damaged one, is refused in one line naming it.

    Args:
        module: The module being trained: the checkpoint must hold weights of the same names and shapes.

    """

    def __init__(self, module: pl.LightningModule) -> None:
        super().__init__()
        self.module = module

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        """The checkpoint at ``path`` (always read as tensors and plain data, whatever ``weights_only`` says)."""
        checkpoint = load_plain(path)
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
            raise ModelError(f"{path}: not a Lightning training checkpoint (no state_dict)")
        expected = {key: tuple(value.shape) for key, value in self.module.state_dict().items()}
        found = {key: tuple(getattr(value, "shape", ())) for key, value in checkpoint["state_dict"].items()}
        if found != expected:
            raise ModelError(f"{path}: holds another model than the recipe builds; resume with the run's own recipe")
        return checkpoint


class ExportModel(pl.Callback):
    """Write the self-describing ``model.pt`` after validations (weights as validated, EMA included).

    Args:
        path: The checkpoint file.
        card: Its model card (the validation figures and the task's sections as the module stands are written
            in at each export).
        sections: ``module -> CardSections``: the task's card sections, thresholds as last tuned.
        monitor: The validation figure that says which weights are best (higher is better).
        keep_best: Export only when ``monitor`` improves, and keep that file at the end of training;
            otherwise export after every validation and at the end.

    """

    def __init__(
        self,
        path: Path,
        card: ModelCard,
        sections: Callable[[pl.LightningModule], CardSections],
        monitor: str,
        keep_best: bool = False,
    ) -> None:
        self.path = path
        self.card = card
        self.sections = sections
        self.monitor = monitor
        self.keep_best = keep_best
        self.best: float | None = None
        self.metrics: dict[str, Any] = {}

    def export(self, module: pl.LightningModule, network: torch.nn.Module | None = None) -> None:
        """Save ``network`` (default: the module's model) with the card, latest figures and tuned thresholds."""
        sections = self.sections(module)
        card = replace(
            self.card,
            thresholds=sections.thresholds,
            input=replace(self.card.input, size=sections.size, tile_size=sections.tile_size),
            proximity=sections.proximity,
            patch=sections.patch,
            evaluation=sections.evaluation,
            metrics=dict(self.metrics),
        )
        save_checkpoint(self.path, network if network is not None else module.model, card)

    @staticmethod
    def _validated_network(trainer: pl.Trainer, module: pl.LightningModule) -> torch.nn.Module:
        """The weights that were validated: the moving average when EMA is on (it is swapped out again by now)."""
        for callback in trainer.callbacks:
            average = getattr(callback, "_average_model", None) if isinstance(callback, WeightAveraging) else None
            if average is not None:
                return average.module.model
        return module.model

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        figures = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        score = figures.get(self.monitor)
        if self.keep_best and score is not None and self.best is not None and score <= self.best:
            return
        self.best = score if score is not None else self.best
        self.metrics["validation"] = {**figures, "epoch": trainer.current_epoch}
        self.export(module, self._validated_network(trainer, module))

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "metrics": self.metrics}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self.metrics = state_dict["best"], state_dict["metrics"]

    def finish(self, module: pl.LightningModule, minutes: float) -> None:
        """Record the whole run's training time and export the final weights.

        When the best validated weights are to be kept and exist, they stay, and their card takes the training time.
        """
        self.card = replace(self.card, provenance=replace(self.card.provenance, training_minutes=minutes))
        if not (self.keep_best and self.best is not None):
            self.export(module)
        elif self.path.is_file():
            update_metadata(self.path, {"provenance": {"training_minutes": minutes}})


def _training_data(
    recipe: Recipe, data: Dataset | None = None
) -> tuple[Dataset, Dataset | None, tuple[str | None, str | None]]:
    """The training and validation images of the recipe's data (read, unless given), and the names of their splits.

    Data that names no splits at all (a folder of images and annotations) is trained on whole, without
    validation, as one warning line says (with how to name splits).

    Raises:
        CytolensError: If the data names splits, but not the recipe's.

    """
    data = load_data(recipe.data, recipe.format) if data is None else data
    train_split, val_split = recipe.train_split, recipe.val_split
    if not data.splits and (train_split or val_split):
        log.warning(
            "%s names no splits: training on all its %d images, without validation (to validate, give a dataset "
            "spec that names them, e.g. splits: {ratio: {train: 0.9, val: 0.1}}; see docs/formats.md)",
            recipe.data, len(data),
        )
        train_split = val_split = None
    train_data = data if train_split is None else split_of(data, train_split, recipe.data)
    val_data = None if val_split is None else split_of(data, val_split, recipe.data)
    return train_data, val_data, (train_split, val_split)


def _data_record(dataset: Dataset, split: str | None) -> DataRecord:
    return DataRecord(name=dataset.name, licence=dataset.licence, split=split, images=len(dataset))


def _single_mpp(data: Dataset) -> float | None:
    """The µm/px of the training images when they all share one, else ``None``."""
    mpps = {image.mpp for image in data.images}
    return mpps.pop() if len(mpps) == 1 else None


def _accelerator(device: str) -> tuple[str, list[int] | int]:
    """Lightning's ``accelerator`` and ``devices`` for ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    chosen = resolve_device(device)
    if chosen.type == "cuda":
        return "gpu", [chosen.index or 0]
    return chosen.type, 1


def _check_run_folder(out: Path, resume: bool, exist_ok: bool) -> None:
    """Refuse an ``out`` that cannot take this run: a file, an earlier run not to be continued or replaced...

    Raises:
        CytolensError: If ``resume`` and ``exist_ok`` are both asked for.
        DataError: Naming ``out``, if it is a file, or is not empty while neither ``resume`` nor ``exist_ok``
            is given; naming ``last.ckpt`` if ``resume`` finds none.

    """
    if resume and exist_ok:
        raise CytolensError("resume continues the earlier run and exist-ok replaces it: ask for one of them")
    if out.exists() and not out.is_dir():
        raise DataError(out, "is a file, not a run folder")
    last = out / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise DataError(last, "nothing to resume from")
    if not (resume or exist_ok) and out.is_dir() and any(out.iterdir()):
        if any((out / name).exists() for name in RUN_ENTRIES):
            raise DataError(out, "holds an earlier run; use --resume to continue it or --exist-ok to replace it")
        raise DataError(out, "is not empty; choose a new or empty run folder, or --exist-ok to write into it")


def _remove_earlier_run(out: Path) -> None:
    """Remove the files of an earlier run from ``out`` (a symbolic link is removed, not followed)."""
    for name in RUN_ENTRIES:
        entry = out / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()


def train(
    recipe: Recipe,
    out: str | Path,
    resume: bool = False,
    device: str = "auto",
    max_steps: int = -1,
    progress: bool = True,
    exist_ok: bool = False,
    data: Dataset | None = None,
) -> Path:
    """Train a model as ``recipe`` says and write its checkpoint to ``out/model.pt``.

    Args:
        recipe: What to train and how.
        out: Output folder.
        resume: Continue from ``out/checkpoints/last.ckpt`` after an interruption.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        max_steps: Stop after this many optimizer steps (for smoke tests), at least 1; -1 for the recipe's epochs.
        progress: Show a progress bar.
        exist_ok: Replace an earlier run in ``out`` (its ``checkpoints/``, ``logs/`` and ``model.pt`` are removed
            once the data and model are ready); without it (or ``resume``) a non-empty ``out`` is refused.
        data: The recipe's data, already read (with the splits the recipe names), instead of reading ``recipe.data``
            (e.g. one fold of a cross-validation).

    Returns:
        The path of the exported model checkpoint.

    Raises:
        CytolensError: If the recipe, ``max_steps`` or the run folder cannot be used (see :func:`_check_run_folder`).

    """
    out = Path(out)
    if max_steps != -1:  # -1: no limit
        max_steps = check_number(max_steps, "max_steps (-1: no limit)", low=1, integer=True)
    _check_run_folder(out, resume, exist_ok)
    if recipe.keep not in ("last", "best"):
        raise CytolensError(f"recipe keep={recipe.keep!r}: use 'last' or 'best'")
    known = architectures(recipe.task)
    if recipe.architecture not in known:
        raise CytolensError(
            f"architecture {recipe.architecture!r} does not serve task {recipe.task!r} (choose: {', '.join(known)})"
        )
    pl.seed_everything(recipe.seed, workers=True, verbose=False)
    train_data, val_data, splits = _training_data(recipe, data)
    if not len(train_data):
        raise CytolensError(f"{recipe.data}: {f'split {splits[0]!r}' if splits[0] else 'it'} holds no images")
    components = task_components(recipe.task)
    model, architecture, kwargs, init_info = initial_model(
        recipe.init, recipe.architecture, train_data.classes, {**recipe.kwargs, **components.builder_kwargs(recipe)}
    )
    input_size = InputSize(recipe.stages, components.base_size(recipe))  # moved by StageSchedule only
    module = components.module(model, recipe, train_data, input_size)
    final_kwargs = {k: v for k, v in kwargs.items() if k != "weights"}
    final_kwargs.update(components.final_kwargs(input_size))
    sections = components.describe(module, recipe, train_data, input_size)
    card = ModelCard(
        task=recipe.task,
        architecture=architecture,
        kwargs=final_kwargs,
        classes=tuple(train_data.classes),
        thresholds=sections.thresholds,
        input=InputConfig(
            mpp=sections.mpp if sections.mpp is not None else _single_mpp(train_data),
            colour=dataset_colour(train_data),
        ),
        provenance=Provenance(
            recipe=recipe.to_dict(),
            data={
                "train": _data_record(train_data, splits[0]),
                "val": _data_record(val_data, splits[1]) if val_data else None,
            },
            init=init_info,
        ),
    )
    if exist_ok:
        _remove_earlier_run(out)
    monitor = components.monitor
    exporter = ExportModel(
        out / "model.pt",
        card,
        lambda trained: components.describe(trained, recipe, train_data, input_size),
        monitor,
        keep_best=recipe.keep == "best",
    )
    fit = components.fit(recipe)
    if fit is not None:  # the task's own fit instead of the loop (the patches fast mode)
        started = time.monotonic()
        figures = fit(module, recipe, train_data, val_data, input_size, progress)
        if figures:
            exporter.metrics["validation"] = figures
        exporter.finish(module, round((time.monotonic() - started) / 60, 1))
        return out / "model.pt"
    train_set = components.dataset(train_data, recipe, input_size, train=True)
    sampler = components.sampler(train_set, recipe)
    loader = DataLoader(
        train_set,
        batch_size=recipe.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        collate_fn=components.collate,
        num_workers=recipe.num_workers,
        drop_last=len(train_set) > recipe.batch_size,
    )
    val_loader = None
    if val_data is not None and len(val_data):
        val_set = components.dataset(val_data, recipe, input_size, train=False)
        val_loader = DataLoader(val_set, batch_size=recipe.batch_size, collate_fn=components.collate, num_workers=0)
    callbacks: list[pl.Callback] = [
        StageSchedule(recipe.stages, input_size),
        # no "last-v1.ckpt" beside last.ckpt (as when a run folder was moved): the folder holds this run only
        ModelCheckpoint(
            dirpath=out / "checkpoints",
            filename="{epoch}",
            save_last=True,
            every_n_epochs=1,
            enable_version_counter=False,
        ),
        exporter,
    ]
    if recipe.ema_decay:
        callbacks.append(WarmEMA(recipe.ema_decay))
    if recipe.patience and val_loader is not None:
        callbacks.append(EarlyStopping(monitor, mode="max", patience=recipe.patience, check_on_train_epoch_end=False))
    accelerator, devices = _accelerator(device)
    last = out / "checkpoints" / "last.ckpt"
    started = time.monotonic()
    with lightning_at_debug():  # the device summary, tips and deprecations at debug level
        trainer = pl.Trainer(
            max_epochs=recipe.epochs,
            max_steps=max_steps,
            accelerator=accelerator,
            devices=devices,
            callbacks=callbacks,
            logger=CSVLogger(out, name="logs"),
            gradient_clip_val=recipe.grad_clip,
            check_val_every_n_epoch=recipe.val_every,
            num_sanity_val_steps=0,
            enable_progress_bar=progress,
            enable_model_summary=False,
            log_every_n_steps=10,
            plugins=[PlainCheckpointIO(module)],
        )
        trainer.fit(module, loader, val_loader, ckpt_path=str(last) if resume else None, weights_only=True)
    exporter.finish(module, round((time.monotonic() - started) / 60, 1))
    return out / "model.pt"
