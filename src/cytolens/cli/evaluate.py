"""``cytolens evaluate``: score predictions against the ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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

if TYPE_CHECKING:
    from cytolens.inference.evaluate import Evaluation, EvaluationOptions


def _above_zero(value: float | None) -> float | None:
    """Option callback refusing a value not above 0 (Typer's ``min=`` is inclusive), with exit code 2."""
    if value is not None and value <= 0:
        raise typer.BadParameter(f"{value:g} is not above 0")
    return value


def _positive_names(values: list[str] | None) -> list[str] | None:
    """Option callback: class names given once each or comma-separated (``--positive HSIL,SCC``)."""
    if not values:
        return None
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if not names:
        raise typer.BadParameter("names no class")
    return names


def _evaluation(
    truth: Dataset,
    predictions: Path | None,
    pred_format: str | None,
    model: str | None,
    options: EvaluationOptions,
    device: str,
    backend: str = "auto",
    views: int | None = None,
) -> Evaluation:
    """The evaluation of the predictions read from ``--predictions``, or made by running ``--model`` on ``truth``.

    Raises:
        typer.BadParameter: If neither or both sources of predictions were given.

    """
    from cytolens.inference.evaluate import DetectorEvaluation
    from cytolens.io.spec import load_data
    from cytolens.metrics import evaluate_datasets

    if (predictions is None) == (model is None):
        raise typer.BadParameter("give either --predictions or --model", param_hint="'--predictions' / '--model'")
    if model is not None:
        from cytolens.inference.evaluate import evaluate
        from cytolens.inference.model import load_model

        loaded = load_model(model, device=device, backend=backend)
        return evaluate(loaded if views is None else loaded.with_views(views), truth, options)
    if options.positive or options.touching or views:
        raise typer.BadParameter("--positive, --touching and --views are for evaluating a --model classifier")
    predicted = load_data(predictions, fmt=pred_format)
    radius, ignore = options.radius, options.ignore_unlabelled
    figures = evaluate_datasets(predicted, truth, radius, ignore_unlabelled=ignore, source=predictions)
    return DetectorEvaluation(figures, predicted, truth, radius)


def _print_tables(result: dict[str, Any]) -> None:
    overall = [(key, value) for key, value in result.items() if is_figure(value)]
    print_table("Evaluation", ["metric", "value"], overall)
    group = result.get("positive")
    if group:
        rows = [(key, value) for key, value in group.items() if is_figure(value)]
        print_table(f"Holds {' or '.join(group['classes'])}", ["metric", "value"], rows)
    per_class = result.get("per_class") or {}
    columns = sorted({key for figures in per_class.values() for key, value in figures.items() if is_figure(value)})
    if columns:
        rows = [[name, *(figures.get(key) for key in columns)] for name, figures in per_class.items()]
        print_table("Per class", ["class", *columns], rows)
    if "confusion" in result:
        names = list(per_class)
        rows = [[name, *counts] for name, counts in zip(names, result["confusion"], strict=True)]
        print_table("Confusion matrix (rows true, columns called)", ["true \\ called", *names], rows)


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
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", min=1, help="Images (detectors, default 1) or patches (classifiers) per forward pass."
        ),
    ] = None,
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
    positive: Annotated[
        list[str] | None,
        typer.Option(
            "--positive",
            callback=_positive_names,
            help="Classifiers: also score 'holds one of these classes' as one yes/no question (e.g. the abnormal "
            "types; comma-separated or repeated): sensitivity, specificity, H-mean, AUC.",
        ),
    ] = None,
    touching: Annotated[
        float | None,
        typer.Option(
            "--touching",
            callback=_above_zero,
            help="Classifiers on point or box data: cells whose centres are closer than this (pixels) make one "
            "patch labelled with the set of their types.",
        ),
    ] = None,
    views: Annotated[
        int | None,
        typer.Option("--views", min=1, help="Classifiers: test-time views averaged per patch (default: the model's)."),
    ] = None,
) -> None:
    """Score predictions, or a model's predictions, against the ground truth given by --data.

    Boxes are scored by average precision, points by precision, recall and F1 within --radius
    pixels, image labels by accuracy; counts per class are compared too. A patch classifier (--model)
    classifies the truth's own patches: each crop of a crop folder, or each labelled cell of point or box data
    (the square of the model's patch side about a point, a box squared and padded), and is scored by accuracy,
    macro F1, per-class sensitivity, specificity, F1 and AUC and the confusion matrix (patches of several
    types: exact match and Hamming loss); its report adds ROC curves and the misclassified patches.
    """
    from cytolens.inference.evaluate import EvaluationOptions
    from cytolens.io.spec import load_data

    truth = load_data(data, fmt=fmt, split=split)
    options = EvaluationOptions(radius, ignore_unlabelled, positive, touching, batch_size, progress=not as_json)
    evaluation = _evaluation(truth, predictions, pred_format, model, options, device, backend, views)
    page = None if report is None else evaluation.write_report(report)
    if as_json:
        print_json(evaluation.figures)
    else:
        _print_tables(evaluation.figures)
        if page is not None:
            typer.echo(f"Report: {page}")
