"""``cytolens screen`` and ``cytolens screen-fit``: whether any abnormal cell is present in an image.

``screen-fit`` fits a screener (:mod:`cytolens.models.screening`) on a model's cells in annotated images;
``screen`` runs the model and the screener on images and writes the outputs of ``predict`` and a verdict
per image. The options they share with ``predict`` are ``predict``'s own (same flags, help and checks).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cytolens.cli.options import BackendOption, DataOption, DeviceOption, FormatOption, JsonOption, SplitOption
from cytolens.cli.predict import predict

if TYPE_CHECKING:
    import pandas as pd

_PREDICT = {name: value.annotation for name, value in inspect.signature(predict, eval_str=True).parameters.items()}
ImagesArgument = _PREDICT["paths"]
OutFolderOption = _PREDICT["out"]
ClassifierOption = _PREDICT["classifier"]
BatchSizeOption = _PREDICT["batch_size"]
MppOption = _PREDICT["mpp"]
RecursiveOption = _PREDICT["recursive"]
ExistOkOption = _PREDICT["exist_ok"]

VERDICT_COLUMNS = ["image", "abnormal_probability", "verdict"]
"""The columns of ``verdicts.csv``."""


def _verdicts(rows: list[tuple[str, float, bool]]) -> pd.DataFrame:
    """The ``verdicts.csv`` table: image id, abnormal probability, ``abnormal`` or ``normal``."""
    import pandas as pd

    return pd.DataFrame(
        [(image, round(probability, 4), "abnormal" if called else "normal") for image, probability, called in rows],
        columns=VERDICT_COLUMNS,
    )


def screen(
    paths: ImagesArgument,
    screener_file: Annotated[
        Path, typer.Option("--screen", dir_okay=False, help="The screener file (written by screen-fit).")
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Bundled model name, checkpoint or pipeline file whose cells the screener reads. \\[default: the "
            "model (and classifier) it was fitted on]",
        ),
    ] = None,
    classifier: ClassifierOption = None,
    out: OutFolderOption = Path("cytolens-screen"),
    batch_size: BatchSizeOption = 1,
    mpp: MppOption = None,
    recursive: RecursiveOption = False,
    exist_ok: ExistOkOption = False,
    device: DeviceOption = "auto",
    backend: BackendOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Say whether each image holds an abnormal cell; write predict's outputs and verdicts.csv.

    verdicts.csv gives per image its abnormal probability and the verdict at the screener's threshold. The
    model (with --classifier: the detector, and the classifier of the cells it finds) finds and classifies
    the cells; the screener (cytolens screen-fit) reads their per-type counts and highest probabilities. An
    unreadable image is reported in one line and skipped; the others complete, and the exit code is 1. --out
    is written as by predict (new or empty unless --exist-ok, whole or not at all).
    For research use only, not for diagnosis.
    """
    import logging

    from cytolens.cli.output import print_json, print_table
    from cytolens.errors import CytolensError, DataError
    from cytolens.inference.model import load_model
    from cytolens.inference.sources import find_images
    from cytolens.io.atomic import write_text
    from cytolens.io.output_run import OutputRun
    from cytolens.models.screening import read_screener
    from cytolens.progress import progress
    from cytolens.results.writers import DEFAULT_OUTPUTS, PredictionWriter

    log = logging.getLogger("cytolens")
    screener = read_screener(screener_file)
    if screener.level != "images":
        raise CytolensError(f"{screener_file}: the screener judges {screener.level}, not images")
    if model is None:
        model, classifier = screener.provenance.get("model"), classifier or screener.provenance.get("classifier")
    if not isinstance(model, str) or not isinstance(classifier, str | None):
        raise CytolensError(f"{screener_file}: the screener does not name its model: give --model")
    ids = find_images(paths, recursive=recursive)
    files = list(ids)
    failed: list[str] = []
    rows: list[tuple[str, float, bool]] = []
    with OutputRun(out, exist_ok=exist_ok, reads=[*files, screener_file]) as run:
        cell_model = load_model(model, device=device, backend=backend, classifier=classifier)
        screener.check_classes(cell_model.classes, cell_model.source)
        abnormal_types = ", ".join(screener.abnormal)
        log.info("%s: abnormal (%s) from probability %g", screener_file, abnormal_types, screener.threshold)
        ratios = list(cell_model.card.report.ratios)
        writer = PredictionWriter(run.path, cell_model.classes, DEFAULT_OUTPUTS, ratios, ids)
        items = cell_model.predict_iter(files, batch_size=batch_size, mpp=mpp)
        try:
            for item in progress(items, len(files), "screening", enabled=not as_json):
                if isinstance(item, DataError):
                    log.error("%s", item)
                    failed.append(str(item.path))
                    continue
                probability = screener.image_probability(item.cells)
                writer.add(item)
                rows.append((writer.results[-1].image_id, probability, probability >= screener.threshold))
        finally:
            writer.close()
            write_text(run.path / "verdicts.csv", _verdicts(rows).to_csv(index=False))
            if writer.results:  # the tables agree with the images done: a new --out keeps them if the run failed
                run.keep_partial()
    verdicts = _verdicts(rows)
    abnormal = int((verdicts["verdict"] == "abnormal").sum())
    if as_json:
        summary = {"images": len(rows), "abnormal": abnormal, "failed": failed, "threshold": screener.threshold}
        print_json({**summary, "verdicts": verdicts.to_dict(orient="records"), "out": str(out)})
    else:
        title = f"{abnormal} of {len(rows)} images called abnormal (written to {out})"
        print_table(title, ["image", "abnormal probability", "verdict"], verdicts.itertuples(index=False))
        typer.echo("For research use only, not for diagnosis.")
    if failed:
        raise typer.Exit(1)


def screen_fit(
    data: DataOption,
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help="Bundled model name, checkpoint or pipeline file whose cells the screener reads."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", dir_okay=False, help="The screener file to write (.skops).")],
    abnormal: Annotated[
        list[str] | None,
        typer.Option("--abnormal", metavar="CLASS", help="A class that counts as abnormal (repeatable)."),
    ] = None,
    normal: Annotated[
        list[str] | None,
        typer.Option(
            "--normal", metavar="CLASS", help="A class that counts as normal (repeatable); every other is abnormal."
        ),
    ] = None,
    classifier: ClassifierOption = None,
    fmt: FormatOption = None,
    split: SplitOption = None,
    threshold: Annotated[
        float, typer.Option("--threshold", min=0.0, max=1.0, help="Call an image abnormal from this probability.")
    ] = 0.5,
    batch_size: BatchSizeOption = 1,
    exist_ok: ExistOkOption = False,
    device: DeviceOption = "auto",
    backend: BackendOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Fit a screener for cytolens screen: whether an image holds an abnormal cell, from the model's cells in it.

    It reads, per type, how many cells and their highest probability, and how many cells; the truth comes
    from the labels of --data: an image is abnormal when any of its labelled cells is of an abnormal class
    (where the data label only some cells, unlabelled abnormal cells go unseen). A gradient-boosting
    classifier (scikit-learn's HistGradientBoostingClassifier), stored with skops without pickle: opening
    the file never runs code.
    """
    from cytolens.cli.output import print_json, print_table
    from cytolens.inference.model import load_model
    from cytolens.io.output_run import OutputRun
    from cytolens.io.spec import load_data
    from cytolens.models.screening import save_screener
    from cytolens.training.screening import abnormal_types, fit_image_screener

    dataset = load_data(data, fmt=fmt, split=split)
    with OutputRun(out, exist_ok=exist_ok, reads=[data]) as run:
        cell_model = load_model(model, device=device, backend=backend, classifier=classifier)
        chosen = abnormal_types(cell_model.classes, abnormal, normal)
        loaded = {"model": model, **({"classifier": classifier} if classifier else {})}
        screener = fit_image_screener(
            cell_model, dataset, chosen, threshold, batch_size, progress=not as_json, provenance=loaded
        )
        save_screener(run.path, screener)
    summary = {**screener.metadata()["provenance"], "abnormal_types": list(chosen), "threshold": threshold}
    if as_json:
        print_json({**summary, "out": str(out)})
    else:
        shown = [(key, ", ".join(value) if isinstance(value, list) else value) for key, value in summary.items()]
        print_table(f"Screener written to {out}", ["", "value"], shown)


screen_fit.__name__ = "screen-fit"  # the verb's name, as ``cytolens --help`` lists it and the verb list is called
