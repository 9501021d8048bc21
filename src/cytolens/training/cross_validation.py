"""k-fold cross-validation of a recipe: one training run per fold, each fold's figures, their mean ± std.

The folds partition the recipe's training images (its ``train_split``; every image when the data names no
splits), stratified by each image's rarest label (:func:`stratification_labels`) and seeded by the recipe's
``seed`` (:func:`~cytolens.data.splits.stratified_kfold_split`). Fold ``k`` trains on the other folds and
validates on fold ``k``, in ``out/fold{k}`` (a run folder as :func:`~cytolens.training.train.train` writes
it). ``out/cv.json`` keeps, per fold, its images and its model's validation figures, and their mean and
standard deviation over the folds (:func:`~cytolens.metrics.classification.aggregate_folds`).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from cytolens.data.annotations import Dataset
from cytolens.data.splits import rarest_labels, stratified_kfold_split
from cytolens.errors import CytolensError, DataError
from cytolens.io.json_files import write_json
from cytolens.io.spec import load_data, split_of
from cytolens.metrics.classification import aggregate_folds
from cytolens.models.checkpoint import read_card
from cytolens.training.recipe import Recipe
from cytolens.training.train import train

log = logging.getLogger(__name__)

SUMMARY = "cv.json"
"""The file of a cross-validation's figures, in its folder."""

TABLE_FIGURES = ("accuracy", "macro_f1", "auc", "exact_match")
"""The validation figures that :func:`fold_table` shows, those that the folds have."""


def stratification_labels(data: Dataset) -> dict[str, int]:
    """Each image's label for stratified folds: the rarest of its image labels, else of its cells' classes
    (:func:`~cytolens.data.splits.rarest_labels`); -1 for an image with neither.
    """
    label_sets = [image.image_labels or image.cells.labels[image.cells.labels >= 0].tolist() for image in data]
    keys = rarest_labels(label_sets)
    return {image.image_id: int(key) for image, key in zip(data, keys, strict=True)}


def fold_data(recipe: Recipe, folds: int) -> tuple[Dataset, str | None]:
    """The images that :func:`cross_validate` folds, with the splits ``train{k}`` and ``fold{k}`` of every fold.

    The images are the recipe's ``train_split`` (every image when the data names no splits), partitioned into
    ``folds`` parts stratified by :func:`stratification_labels` and seeded by the recipe's ``seed``; fold ``k``
    holds out ``fold{k}`` and trains on ``train{k}``. The same recipe and ``folds`` always give the same splits.

    Returns:
        The images with the folds' splits, and the name of the split they were taken from (``None``: every image).

    Raises:
        CytolensError: If the images cannot make ``folds`` folds.
        DataError: If the data cannot be read.

    """
    data = load_data(recipe.data, recipe.format)
    pooled = recipe.train_split if data.splits else None
    if pooled:
        data = split_of(data, pooled, recipe.data)
    labels = stratification_labels(data)
    try:
        splits = stratified_kfold_split(labels, folds, recipe.seed)
    except ValueError as error:
        raise CytolensError(f"{recipe.data}: cannot make {folds} folds of {len(data)} images: {error}") from None
    rare = [data.classes[key] for key, count in sorted(Counter(labels.values()).items()) if key >= 0 and count < folds]
    if rare:
        log.warning("fewer images than folds hold %s: some folds validate without them", ", ".join(rare))
    return replace(data, splits=splits), pooled


def _check_folder(out: Path, resume: bool, exist_ok: bool) -> None:
    if resume and exist_ok:
        raise CytolensError("resume continues the earlier folds and exist-ok replaces them: ask for one of them")
    if out.exists() and not out.is_dir():
        raise DataError(out, "is a file, not a cross-validation folder")
    if not (resume or exist_ok) and out.is_dir() and any(out.iterdir()):
        raise DataError(out, "is not empty; use --resume to continue its folds or --exist-ok to replace them")


def cross_validate(
    recipe: Recipe,
    out: str | Path,
    folds: int,
    resume: bool = False,
    exist_ok: bool = False,
    device: str = "auto",
    max_steps: int = -1,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``recipe`` once per fold and write ``out/cv.json``.

    Args:
        recipe: What to train and how (its ``val_split`` is not used: each fold validates on its held-out part).
        out: The cross-validation folder: ``fold0`` ... run folders and ``cv.json``.
        folds: Number of folds, at least 2.
        resume: Continue the folds begun in ``out`` (a fold with a ``last.ckpt`` is resumed, the others start).
        exist_ok: Replace the runs of an earlier cross-validation in ``out``.
        device: As :func:`~cytolens.training.train.train`.
        max_steps: Steps per fold (smoke tests), -1 for the recipe's epochs.
        progress: Show a progress bar.

    Returns:
        What ``cv.json`` holds: ``folds``, ``seed``, ``data``, ``train_split``, ``per_fold`` (per fold its
        ``fold`` name, ``train_images``, ``val_images``, ``model`` and validation ``figures``) and ``mean``
        (each figure's ``mean`` and ``std`` over the folds).

    Raises:
        CytolensError: If the folds cannot be made (too many for the images), both ``resume`` and ``exist_ok`` are
            asked for, or a run cannot start.
        DataError: Naming ``out``, if it is a file, or holds files without ``resume`` or ``exist_ok``.

    """
    out = Path(out)
    _check_folder(out, resume, exist_ok)
    data, pooled = fold_data(recipe, folds)
    splits = data.splits
    per_fold = []
    for k in range(folds):
        run = out / f"fold{k}"
        continued = resume and (run / "checkpoints" / "last.ckpt").is_file()
        fold_recipe = replace(recipe, train_split=f"train{k}", val_split=f"fold{k}")
        log.info("fold %d of %d: %d training and %d validation images", k + 1, folds,
                 len(splits[f"train{k}"]), len(splits[f"fold{k}"]))
        model = train(fold_recipe, run, resume=continued, device=device, max_steps=max_steps, progress=progress,
                      exist_ok=exist_ok or (resume and not continued), data=data)
        card, _ = read_card(model)
        validation = card.metrics.get("validation", {})
        per_fold.append({
            "fold": f"fold{k}",
            "train_images": len(splits[f"train{k}"]),
            "val_images": len(splits[f"fold{k}"]),
            "model": str(model),
            "figures": {key.removeprefix("val/"): value for key, value in validation.items() if key != "epoch"},
        })
    summary = {
        "folds": folds,
        "seed": recipe.seed,
        "data": recipe.data,
        "train_split": pooled,
        "per_fold": per_fold,
        "mean": aggregate_folds([fold["figures"] for fold in per_fold]),
    }
    write_json(out / SUMMARY, summary, indent=2)
    return summary


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def fold_table(summary: dict[str, Any]) -> str:
    """The figures of each fold and their mean ± std, as a text table (figures of :data:`TABLE_FIGURES` present)."""
    shown = [name for name in TABLE_FIGURES if name in summary["mean"]]
    rows = [["fold", "train", "val", *shown]]
    for fold in summary["per_fold"]:
        figures = fold["figures"]
        rows.append([fold["fold"], str(fold["train_images"]), str(fold["val_images"]),
                     *(_number(figures.get(name)) for name in shown)])
    means = summary["mean"]
    rows.append(["mean ± std", "", "",
                 *(f"{_number(means[name]['mean'])} ± {_number(means[name]['std'])}" for name in shown)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)
