"""``cytolens evaluate``: score predictions against the ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cytolens.cli.options import (
    BackendOption,
    DataOption,
    DeviceOption,
    FormatName,
    FormatOption,
    JsonOption,
    SplitOption,
)
from cytolens.cli.output import print_json, print_table
from cytolens.data.annotations import Dataset
from cytolens.metrics.numbers import is_figure


def _above_zero(value: float | None) -> float | None:
    """Option callback refusing a value not above 0 (Typer's ``min=`` is inclusive), with exit code 2."""
    if value is not None and value <= 0:
        raise typer.BadParameter(f"{value:g} is not above 0")
    return value


def _score(
    truth: Dataset,
    predictions: Path | None,
    pred_format: str | None,
    model: str | None,
    radius: float | None,
    device: str,
    batch_size: int,
    backend: str = "auto",
    progress: bool = True,
    ignore_unlabelled: bool = False,
) -> tuple[dict[str, Any], Dataset, float | None]:
    """The figures, the predictions (read from ``--predictions``, or made by running ``--model`` on
    ``truth``) and the point-matching radius used (``--radius``, else the one stored with the model).

    Raises:
        typer.BadParameter: If neither or both sources of predictions were given.

    """
    from cytolens.io.spec import load_data
    from cytolens.metrics import evaluate_datasets

    if (predictions is None) == (model is None):
        raise typer.BadParameter("give either --predictions or --model", param_hint="'--predictions' / '--model'")
    if model is not None:
        from cytolens.inference.evaluate import evaluate_model
        from cytolens.inference.model import load_model

        cell_model = load_model(model, device=device, backend=backend)
        radius = cell_model.card.evaluation.radius if radius is None else radius
        return (*evaluate_model(cell_model, truth, radius, batch_size, progress, ignore_unlabelled), radius)
    predicted = load_data(predictions, fmt=pred_format)
    figures = evaluate_datasets(predicted, truth, radius, ignore_unlabelled=ignore_unlabelled, source=predictions)
    return figures, predicted, radius


def _print_tables(result: dict[str, Any]) -> None:
    overall = [(key, value) for key, value in result.items() if is_figure(value)]
    print_table("Evaluation", ["metric", "value"], overall)
    per_class = result.get("per_class") or {}
    columns = sorted({key for figures in per_class.values() for key, value in figures.items() if is_figure(value)})
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
        float | None,
        typer.Option(
            "--radius", "-r", callback=_above_zero, help="Matching radius in pixels (above 0) for point detections."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass (--model).")] = 1,
    device: DeviceOption = "auto",
    as_json: JsonOption = False,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Also write a report (HTML page, metrics.json, plots) to this folder."),
    ] = None,
    backend: BackendOption = "auto",
    ignore_unlabelled: Annotated[
        bool,
        typer.Option(
            "--ignore-unlabelled",
            help="The ground truth labels only some cells: predicted points on unlabelled (stained) cells count "
            "neither as right nor as wrong.",
        ),
    ] = False,
) -> None:
    """Score predictions, or a model's predictions, against the ground truth given by --data.

    Boxes are scored by average precision, points by precision, recall and F1 within --radius
    pixels, image labels by accuracy; counts per class are compared too.
    """
    from cytolens.io.spec import load_data
    from cytolens.metrics.report import write_report

    truth = load_data(data, fmt=fmt, split=split)
    result, predicted, radius = _score(
        truth, predictions, pred_format, model, radius, device, batch_size, backend, progress=not as_json,
        ignore_unlabelled=ignore_unlabelled,
    )
    page = None if report is None else write_report(result, predicted, truth, report, radius)
    if as_json:
        print_json(result)
    else:
        _print_tables(result)
        if page is not None:
            typer.echo(f"Report: {page}")
