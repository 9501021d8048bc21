"""``cytolens evaluate``: score predictions against the ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cytolens.cli.options import DataOption, FormatName, FormatOption, JsonOption, SplitOption
from cytolens.cli.output import json_text, print_json, print_table
from cytolens.data.annotations import Dataset


def predictions_for(truth: Dataset, predictions: Path | None, pred_format: str | None) -> Dataset:
    """The predictions to score against ``truth``, from the source the command line names.

    Args:
        truth: The ground truth; its images are those a model would predict on.
        predictions: A predictions file or folder (or spec) to read.
        pred_format: The annotation format of ``predictions``.

    Raises:
        typer.BadParameter: If no source of predictions was given.

    """
    from cytolens.data.spec import load_data

    if predictions is None:
        raise typer.BadParameter("give the predictions to evaluate", param_hint="'--predictions'")
    return load_data(predictions, fmt=pred_format)


def write_report(result: dict[str, Any], folder: Path) -> None:
    """Write ``metrics.json`` (the whole result) and, when boxes were scored, ``pr_curves.png`` to ``folder``."""
    from cytolens.io.atomic import write_text
    from cytolens.metrics import plot_pr_curves

    write_text(folder / "metrics.json", json_text(result) + "\n")
    curves = result.get("details", {}).get("boxes", {}).get("pr_curves")
    if curves:
        plot_pr_curves(curves, folder / "pr_curves.png")


def _is_figure(value: Any) -> bool:
    return value is None or isinstance(value, int | float)


def _print_tables(result: dict[str, Any]) -> None:
    overall = [(key, value) for key, value in result.items() if _is_figure(value)]
    print_table("Evaluation", ["metric", "value"], overall)
    per_class = result.get("per_class") or {}
    columns = sorted({key for figures in per_class.values() for key, value in figures.items() if _is_figure(value)})
    if columns:
        rows = [[name, *(figures.get(key) for key in columns)] for name, figures in per_class.items()]
        print_table("Per class", ["class", *columns], rows)


def evaluate(
    data: DataOption,
    predictions: Annotated[
        Path | None, typer.Option("--predictions", "-p", help="Predictions: a spec file, or a folder or file.")
    ] = None,
    pred_format: Annotated[
        FormatName | None, typer.Option("--pred-format", help="Annotation format of the predictions.")
    ] = None,
    fmt: FormatOption = None,
    split: SplitOption = None,
    radius: Annotated[
        float | None, typer.Option("--radius", "-r", help="Matching radius in pixels for point detections.")
    ] = None,
    as_json: JsonOption = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write a report (JSON, plots) to this folder.")
    ] = None,
) -> None:
    """Score predictions against the ground truth given by --data.

    Boxes are scored by average precision, points by precision, recall and F1 within --radius
    pixels, image labels by accuracy; counts per class are compared too.
    """
    from cytolens.data.spec import load_data
    from cytolens.metrics import evaluate_datasets

    truth = load_data(data, fmt=fmt, split=split)
    result = evaluate_datasets(predictions_for(truth, predictions, pred_format), truth, radius)
    if report is not None:
        write_report(result, report)
    if as_json:
        print_json(result)
    else:
        _print_tables(result)
