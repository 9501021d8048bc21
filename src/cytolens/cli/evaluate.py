"""``cytolens evaluate``: score predictions against the ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cytolens.cli.options import DataOption, DeviceOption, FormatName, FormatOption, JsonOption, SplitOption
from cytolens.cli.output import json_text, print_json, print_table
from cytolens.data.annotations import Dataset


def _score(
    truth: Dataset,
    predictions: Path | None,
    pred_format: str | None,
    model: str | None,
    radius: float | None,
    device: str,
    batch_size: int,
) -> tuple[dict[str, Any], Dataset]:
    """The figures and the predictions: read from ``--predictions``, or made by running ``--model`` on ``truth``.

    Raises:
        typer.BadParameter: If neither or both sources of predictions were given.

    """
    from cytolens.data.spec import load_data
    from cytolens.metrics import evaluate_datasets

    if (predictions is None) == (model is None):
        raise typer.BadParameter("give either --predictions or --model", param_hint="'--predictions' / '--model'")
    if model is not None:
        from cytolens.inference.evaluate import evaluate_model
        from cytolens.inference.model import load_model

        return evaluate_model(load_model(model, device=device), truth, radius, batch_size)
    predicted = load_data(predictions, fmt=pred_format)
    return evaluate_datasets(predicted, truth, radius), predicted


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
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Evaluate this model (bundled name or checkpoint) instead.")
    ] = None,
    pred_format: Annotated[
        FormatName | None, typer.Option("--pred-format", help="Annotation format of the predictions.")
    ] = None,
    fmt: FormatOption = None,
    split: SplitOption = None,
    radius: Annotated[
        float | None, typer.Option("--radius", "-r", help="Matching radius in pixels for point detections.")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass (--model).")] = 1,
    device: DeviceOption = "auto",
    as_json: JsonOption = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write a report (JSON, plots) to this folder.")
    ] = None,
) -> None:
    """Score predictions, or a model's predictions, against the ground truth given by --data.

    Boxes are scored by average precision, points by precision, recall and F1 within --radius
    pixels, image labels by accuracy; counts per class are compared too.
    """
    from cytolens.data.spec import load_data

    truth = load_data(data, fmt=fmt, split=split)
    result, _ = _score(truth, predictions, pred_format, model, radius, device, batch_size)
    if report is not None:
        write_report(result, report)
    if as_json:
        print_json(result)
    else:
        _print_tables(result)
