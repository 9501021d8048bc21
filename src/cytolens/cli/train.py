"""``cytolens train``: train a box, point or patch model from a recipe file and/or options, or cross-validate it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cytolens.cli.options import DeviceOption, FormatOption, JsonOption

if TYPE_CHECKING:
    from cytolens.training.recipe import Recipe


def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, logs and model.pt.")],
    recipe: Annotated[Path | None, typer.Option("--recipe", help="Recipe YAML (see configs/).")] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data", "-d", metavar="PATH|URL",
            help="Dataset spec file, folder with --format, or an annotation store (a SQLite file or a database URL: "
            "see below).",
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option("--images", file_okay=False,
                     help="With a store as --data: the folder its image paths are relative to (as given to review)."),
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option("--val-fraction",
                     help="With a store as --data: the seeded fraction of its labelled images that validates "
                     "(default 0.2)."),
    ] = None,
    fmt: FormatOption = None,
    task: Annotated[
        str | None, typer.Option("--task", help="boxes, points or patches (the recipe's task: its 'task' key).")
    ] = None,
    architecture: Annotated[
        str | None,
        typer.Option("--architecture", help="Registered architecture (default: the recipe's, else the task's first)."),
    ] = None,
    train_split: Annotated[str | None, typer.Option("--train-split", help="Split to train on.")] = None,
    val_split: Annotated[str | None, typer.Option("--val-split", help="Split to validate on.")] = None,
    init: Annotated[
        str | None, typer.Option("--init", help="imagenet, none, a bundled model name or a checkpoint to fine-tune.")
    ] = None,
    freeze_blocks: Annotated[
        int | None, typer.Option("--freeze-blocks", min=0, help="Freeze the first K blocks (one stage).")
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs (one stage).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1)] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Base learning rate.")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    aux_data: Annotated[Path | None, typer.Option("--aux-data", help="Auxiliary dataset spec (points task).")] = None,
    aux_weight: Annotated[float | None, typer.Option("--aux-weight", help="γ: loss = γ·L_target + L_aux.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out.")] = False,
    exist_ok: Annotated[
        bool, typer.Option("--exist-ok", help="Start afresh in an --out holding a run (its files are removed).")
    ] = False,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Stop after N steps (smoke tests; default: no limit).")
    ] = None,
    folds: Annotated[
        int | None,
        typer.Option(
            "--folds", min=2, help="k-fold cross-validation: one run per fold in OUT/fold0..., figures in OUT/cv.json."
        ),
    ] = None,
    device: DeviceOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Train a model; writes OUT/model.pt (self-describing), OUT/checkpoints (for --resume) and OUT/logs.

    --out must be new or empty unless --resume (continue its run) or --exist-ok (start afresh).
    Options override the recipe. --freeze-blocks (with --epochs for a multi-stage recipe) replaces the
    recipe's stages by one stage; --epochs alone scales every stage of the recipe in proportion.
    With --folds K, the recipe's training images are split into K folds, stratified by label and seeded
    by --seed; each fold trains on the others and validates on itself, and a table of the folds' figures
    and their mean ± std is printed.

    An annotation store as --data (with --images, the folder its image paths are relative to) trains on
    its labelled images, their current labels; --val-fraction of them (seeded by --seed) validates.
    Cells a reviewer left unlabelled are never taught as background (box and point models leave
    stained pixels outside every label out of the loss). It fine-tunes --init when given, else the
    store's current model (the model version recorded last, e.g. by rank --store) if it is a single
    model of the task whose file is still there with the recorded sha256, else the recipe's init; a
    note says which. The classes are that model's when they hold every labelled class.
    """
    from cytolens.cli.output import print_json
    from cytolens.models.checkpoint import read_card
    from cytolens.models.registry import architectures
    from cytolens.store.dataset import is_store
    from cytolens.training.recipe import Recipe
    from cytolens.training.stages import Stage
    from cytolens.training.store_data import VAL_FRACTION, store_training
    from cytolens.training.train import train as run_training

    base = Recipe.from_yaml(recipe) if recipe else Recipe()
    values = base.to_dict()
    if task is not None and task != base.task:
        values.pop(base.task, None)  # the recipe's task settings belong to its own task
    given = {
        "data": data,
        "format": fmt,
        "task": task,
        "architecture": architecture,
        "train_split": train_split,
        "val_split": val_split,
        "init": init,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
    }
    values.update({key: value for key, value in given.items() if value is not None})
    served = architectures(values["task"])
    if architecture is None and values["architecture"] not in served and served:
        values["architecture"] = next(iter(served))  # --task alone: the task's first architecture
    auxiliary = {"aux_data": str(aux_data) if aux_data else None, "aux_weight": aux_weight}
    auxiliary = {key: value for key, value in auxiliary.items() if value is not None}
    if auxiliary and values["task"] != "points":
        raise typer.BadParameter("auxiliary data trains point models (--task points)", param_hint="'--aux-data'")
    if auxiliary:
        values["points"] = {**(values.get("points") or {}), **auxiliary}
    if freeze_blocks is not None:
        if epochs is None and len(base.stages) > 1:
            raise typer.BadParameter("with a multi-stage recipe, give --epochs too", param_hint="'--freeze-blocks'")
        values["stages"] = [Stage(freeze_blocks, epochs or base.epochs, base.stages[-1].max_size)]
    elif epochs is not None:
        scale = epochs / base.epochs
        values["stages"] = [
            Stage(stage.freeze_blocks, max(1, round(stage.epochs * scale)), stage.max_size) for stage in base.stages
        ]
    if not values.get("data"):
        raise typer.BadParameter("give --data or a --recipe that names its data", param_hint="'--data'")
    from_store = images is not None or is_store(values["data"])  # --images: a store, even one not found
    _check_store_options(from_store, images, val_fraction, fmt, folds)
    if folds is not None:
        _cross_validate(Recipe.from_dict(values), out, folds, resume, exist_ok, device, max_steps, as_json)
        return
    chosen, dataset = Recipe.from_dict(values), None
    if from_store:
        fraction = VAL_FRACTION if val_fraction is None else val_fraction
        chosen, dataset = store_training(chosen, images, init_given=init is not None, val_fraction=fraction)
    path = run_training(
        chosen,
        out,
        resume=resume,
        exist_ok=exist_ok,
        device=device,
        max_steps=-1 if max_steps is None else max_steps,
        data=dataset,
    )
    card, _ = read_card(path)
    if as_json:
        print_json({"model": str(path), "metrics": card.metrics})
    else:
        typer.echo(f"model written to {path}")


def _check_store_options(
    from_store: bool, images: Path | None, val_fraction: float | None, fmt: str | None, folds: int | None
) -> None:
    """Refuse the options a store as data needs but lacks, or takes not; and the store's options without one."""
    from cytolens.io.validation import check_number

    if not from_store:
        if val_fraction is not None:
            raise typer.BadParameter("only an annotation store as --data takes it", param_hint="'--val-fraction'")
        return
    if images is None:
        raise typer.BadParameter("a store as --data needs --images, the folder its image paths are relative to",
                                 param_hint="'--images'")
    for value, option in ((fmt, "--format"), (folds, "--folds")):
        if value is not None:
            raise typer.BadParameter("takes a dataset, not an annotation store", param_hint=option)
    if val_fraction is not None:
        check_number(val_fraction, "--val-fraction", low=0, low_open=True, high=1, high_open=True)


def _cross_validate(
    recipe: Recipe, out: Path, folds: int, resume: bool, exist_ok: bool, device: str, max_steps: int | None,
    as_json: bool,
) -> None:
    """Run ``train --folds``: the folds' runs, then their table (or the summary as JSON)."""
    from cytolens.cli.output import print_json
    from cytolens.training.cross_validation import SUMMARY, cross_validate, fold_table

    summary = cross_validate(
        recipe, out, folds, resume=resume, exist_ok=exist_ok, device=device,
        max_steps=-1 if max_steps is None else max_steps,
    )
    if as_json:
        print_json(summary)
    else:
        typer.echo(fold_table(summary))
        typer.echo(f"folds written to {out}, figures to {out / SUMMARY}")
