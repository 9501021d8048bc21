"""``cytolens predict``: find and classify cells in images and write every output."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from cytolens.cli.options import BackendOption, DeviceOption, FlipsOption, JsonOption, SchedulerOption, WorkersOption

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cytolens.data.cells import ScoreThreshold
    from cytolens.errors import DataError
    from cytolens.inference.model import Model
    from cytolens.inference.parallel import ModelSpec
    from cytolens.results.result import Result

DEFAULT_MODEL = "blood-cells"


def _configured(
    cell_model: Model,
    score_threshold: str | None,
    iou: float | None,
    tile_size: int | None,
    overlap: int | None,
    views: int | None = None,
    flips: bool = False,
) -> tuple[Model, ScoreThreshold | None]:
    """The model with ``--iou`` as its NMS IoU, ``--tile-size``/``--overlap`` as its tiling, ``--views`` as its
    test-time views and ``--flips`` on, and the score threshold ``--score-threshold`` asks for (of a pipeline's
    detector: per class, its classes).

    Raises:
        typer.BadParameter: If ``--score-threshold`` is malformed or names a class the model does not have,
            ``--iou`` is given for a point model, ``--views`` for a model without a patch classifier or out of
            range, or ``--flips`` for a box model (exit code 2).

    """
    from cytolens.errors import CytolensError
    from cytolens.inference.pipeline import Pipeline
    from cytolens.results.thresholds import parse_score_threshold

    if iou is not None:
        if cell_model.task != "boxes":
            raise typer.BadParameter(
                f"sets the NMS of box models; {cell_model.source} is a {cell_model.task} model", param_hint="--iou"
            )
        cell_model = cell_model.with_thresholds(nms=iou)
    if tile_size is not None or overlap is not None:
        cell_model = cell_model.with_tiling(tile_size, overlap)
    if views is not None:
        try:
            cell_model = cell_model.with_views(views)
        except CytolensError as error:
            raise typer.BadParameter(str(error), param_hint="--views") from None
    if flips:
        try:
            cell_model = cell_model.with_flips()
        except CytolensError as error:
            raise typer.BadParameter(str(error), param_hint="--flips") from None
    if score_threshold is None:
        return cell_model, None
    scored = cell_model.finder if isinstance(cell_model, Pipeline) else cell_model
    try:
        return cell_model, parse_score_threshold(score_threshold, scored.classes, scored.thresholds.min_score)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--score-threshold") from None


def _on_workers(
    spec: ModelSpec,
    files: list[Path],
    threshold: ScoreThreshold | None,
    mpp: float | None,
    batch_size: int,
    workers: int,
    scheduler: str | None,
) -> Iterator[Result | DataError]:
    """The results of ``files`` in order, each image predicted on a worker process (``--workers``/``--scheduler``)
    that loads the model of ``spec`` once.
    """
    from cytolens.inference.parallel import ImageJob, ordered_map, predict_image

    jobs = (ImageJob(spec, file, threshold, mpp, batch_size) for file in files)
    return ordered_map(predict_image, jobs, workers=workers, scheduler=scheduler)


def predict(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.", metavar="IMAGES")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("cytolens-out"),
    model: Annotated[
        str, typer.Option("--model", "-m", help="Bundled model name, checkpoint file or pipeline file.")
    ] = DEFAULT_MODEL,
    classifier: Annotated[
        str | None,
        typer.Option(
            "--classifier",
            help="A patch classifier (bundled name or checkpoint file) that classifies every cell --model finds: "
            "each cell's class and probabilities become the classifier's.",
        ),
    ] = None,
    views: Annotated[
        int | None,
        typer.Option(
            "--views",
            min=1,
            help="Patch classifiers: average each patch's probabilities over this many test-time views (flips, "
            "rotations, shifts). \\[default: the classifier's]",
        ),
    ] = None,
    flips: FlipsOption = False,
    stain: Annotated[
        Literal["reinhard", "macenko"] | None,
        typer.Option(
            "--stain",
            help="Normalise each image's stain towards --stain-reference before the model runs (H&E from another "
            "lab; the outputs keep the image's own colours).",
        ),
    ] = None,
    stain_reference: Annotated[
        Path | None,
        typer.Option("--stain-reference", dir_okay=False, help="An image stained as the model's training images."),
    ] = None,
    score_threshold: Annotated[
        str | None,
        typer.Option(
            "--score-threshold",
            metavar="SCORE|CLASS=SCORE,...",
            help="Keep cells scoring at least this: one number for every class, or per class, e.g. RBC=0.4,WBC=0.5 "
            "(classes not named keep the model's). \\[default: the model's, see cytolens models]",
        ),
    ] = None,
    iou: Annotated[
        float | None,
        typer.Option(
            "--iou",
            min=0.0,
            max=1.0,
            help="Box models: of two boxes of one class overlapping by more than this IoU, keep the higher-scoring "
            "one (non-maximum suppression). \\[default: the model's]",
        ),
    ] = None,
    tile_size: Annotated[
        int | None,
        typer.Option(
            "--tile-size",
            min=32,
            help="Cut images larger than this into tiles of at most this many pixels a side, and merge the cells "
            "found across tile borders. \\[default: the model's]",
        ),
    ] = None,
    overlap: Annotated[
        int | None,
        typer.Option(
            "--overlap",
            min=0,
            help="Pixels that neighbouring tiles share: at least the largest cell, so that a cell on a border is "
            "seen whole in one tile. \\[default: the model's]",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Images (of large images: tiles) per forward pass.")
    ] = 1,
    outputs: Annotated[
        str | None,
        typer.Option(
            "--outputs",
            help="Comma-separated outputs: csv, coco, geojson, overlay, counts, napari, label-studio (Label Studio "
            "tasks with the cells as predictions, and their labelling config). \\[default: all but label-studio]",
        ),
    ] = None,
    ratio: Annotated[
        list[str] | None, typer.Option("--ratio", help="Count ratio for counts.csv, e.g. RBC:WBC (repeatable).")
    ] = None,
    mpp: Annotated[
        float | None,
        typer.Option("--mpp", help="µm per pixel of the images (default: what a TIFF states); resized to the model's."),
    ] = None,
    recursive: Annotated[
        bool,
        typer.Option(
            "--recursive", "-r", help="Look for images in sub-folders too; image ids and output names keep the "
            "sub-folders (slideA/field1)."
        ),
    ] = False,
    exist_ok: Annotated[
        bool, typer.Option("--exist-ok", help="Replace an earlier run in --out (whole, when this run ends).")
    ] = False,
    label_studio_root: Annotated[
        Path | None,
        typer.Option(
            "--label-studio-root",
            envvar="LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT",
            file_okay=False,
            help="The folder Label Studio serves local files from: label-studio.json then names each image by "
            "the URL Label Studio serves it at, /data/local-files/?d=<path under this folder>.",
        ),
    ] = None,
    device: DeviceOption = "auto",
    backend: BackendOption = "auto",
    workers: WorkersOption = 1,
    scheduler: SchedulerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find and classify cells in images; write cells.csv, counts.csv, COCO, QuPath GeoJSON, napari and overlays.

    With --classifier (or a pipeline file as --model), a patch classifier classifies every cell found; with a
    patch classifier as --model, each image is one cell (a crop), classified whole into images.csv.

    An unreadable image is reported in one line and skipped; the others complete, and the exit code is 1.
    With --workers N (or --scheduler), images are predicted on N processes (or a Dask cluster's workers, which must
    see the images and the model file at the paths given), each loading the model once; outputs are those of one
    process, in the same order.
    --out must be new or empty unless --exist-ok; the run is written beside it and moved into place when
    it ends, so --out never holds a mix of runs, and a second run into it at the same time is refused.
    For research use only, not for diagnosis.
    """
    import logging

    from cytolens.cli.output import print_json, print_table
    from cytolens.errors import DataError
    from cytolens.inference.model import load_model
    from cytolens.inference.parallel import ModelSpec
    from cytolens.inference.sources import find_images
    from cytolens.io.images import read_image
    from cytolens.io.label_studio import local_files_url
    from cytolens.io.output_run import OutputRun
    from cytolens.io.slides import is_slide
    from cytolens.io.validation import check_number
    from cytolens.progress import progress
    from cytolens.results.counts import parse_ratio
    from cytolens.results.thresholds import describe
    from cytolens.results.writers import DEFAULT_OUTPUTS, PredictionWriter

    if mpp is not None:
        check_number(mpp, "--mpp", low=0, low_open=True)
    log = logging.getLogger("cytolens")
    chosen = DEFAULT_OUTPUTS if outputs is None else [name.strip() for name in outputs.split(",") if name.strip()]
    ids = find_images(paths, recursive=recursive)
    whole = {file: is_slide(file) for file in ids}  # each file's header read once
    slides = [DataError(file, "is a whole slide: use cytolens slide for slides (it reads them region by region)")
              for file, slide in whole.items() if slide]
    files = [file for file, slide in whole.items() if not slide]
    if not files and slides:
        raise slides[0]
    served_from = label_studio_root if "label-studio" in chosen else None
    for file in files if served_from is not None else []:
        local_files_url(file, served_from)  # refuse, before predicting, an image Label Studio could not show
    if (stain is None) != (stain_reference is None):
        raise typer.BadParameter("--stain and --stain-reference go together", param_hint="--stain")
    reference = None if stain_reference is None else read_image(stain_reference)  # one line if unreadable
    for slide in slides:  # the other images still run
        log.error("%s", slide)
    failed = [str(slide.path) for slide in slides]
    with OutputRun(out, exist_ok=exist_ok, reads=files) as run:
        loaded = load_model(model, device=device, backend=backend, classifier=classifier)
        cell_model, threshold = _configured(loaded, score_threshold, iou, tile_size, overlap, views, flips)
        cell_model = cell_model.with_stain(stain, reference)
        shown = cell_model.thresholds.min_score if threshold is None else threshold
        log.info("%s: score threshold %s", model, describe(shown))
        ratios = [parse_ratio(text, cell_model.classes) for text in ratio or []]
        if not ratios:
            ratios = list(cell_model.card.report.ratios)
        totals = dict.fromkeys(cell_model.classes, 0)
        if workers == 1 and scheduler is None:
            items = cell_model.predict_iter(files, batch_size=batch_size, score_threshold=threshold, mpp=mpp)
        else:
            thresholds = {} if iou is None else {"nms": iou}
            settings = {
                "thresholds": thresholds, "tile_size": tile_size, "overlap": overlap, "views": views, "flips": flips,
                "stain": None if stain is None else [stain, str(stain_reference)],
            }
            spec = ModelSpec(model, classifier, device, backend, settings)
            items = _on_workers(spec, files, threshold, mpp, batch_size, workers, scheduler)
        writer = PredictionWriter(run.path, cell_model.classes, chosen, ratios, ids, served_from)
        try:
            for item in progress(items, len(files), "predicting", enabled=not as_json):
                if isinstance(item, DataError):
                    log.error("%s", item)
                    failed.append(str(item.path))
                    continue
                writer.add(item)
                for name, count in item.counts().items():
                    totals[name] += count
        finally:
            writer.close()
            if writer.results:  # the tables agree with the images done: a new --out keeps them if the run failed
                run.keep_partial()
    summary = {"images": len(writer.results), "failed": failed, "cells": totals, "out": str(out)}
    if as_json:
        print_json(summary)
    else:
        print_table(f"Cells in {len(writer.results)} images (written to {out})", ["class", "cells"], totals.items())
        typer.echo("For research use only, not for diagnosis.")
    if failed:
        raise typer.Exit(1)
