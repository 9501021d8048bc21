"""``cytolens slide``: find and count the cells of whole slides, region by region, in bounded memory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cytolens.cli.options import BackendOption, DeviceOption, FlipsOption, JsonOption, SchedulerOption, WorkersOption
from cytolens.cli.screen import ClassifierOption, ExistOkOption


def slide(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Slides: pyramidal TIFF or OME-TIFF, large TIFF, SVS or NDPI.", metavar="SLIDES"),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("cytolens-slides"),
    model: Annotated[
        str, typer.Option("--model", "-m", help="Bundled model name, checkpoint file or pipeline file.")
    ] = "blood-cells",
    classifier: ClassifierOption = None,
    mpp: Annotated[
        float | None,
        typer.Option("--mpp", help="µm per pixel of the slides' full resolution (default: what each file "
                     "states)."),
    ] = None,
    tile_size: Annotated[
        int | None,
        typer.Option("--tile-size", min=256, help="Side of the regions predicted one at a time, in model pixels. "
                     "(default 2048)"),
    ] = None,
    overlap: Annotated[
        int | None,
        typer.Option("--overlap", min=0, help="Pixels (of the model) that neighbouring regions share: more than the "
                     "largest cell. (default 256)"),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Go on with the unfinished run in --out (same model, slides, settings).")
    ] = False,
    exist_ok: ExistOkOption = False,
    flips: FlipsOption = False,
    no_tissue_mask: Annotated[
        bool, typer.Option("--no-tissue-mask", help="Predict every region, glass included.")
    ] = False,
    workers: WorkersOption = 1,
    scheduler: SchedulerOption = None,
    device: DeviceOption = "cpu",
    backend: BackendOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Find and count the cells of whole slides; write cells.parquet, cells.csv, QuPath GeoJSON and summary.csv.

    Each slide is read at the pyramid level nearest the model's µm/px and cut into overlapping regions; regions
    without tissue or smear are skipped; each region's cells are written as it finishes, and a cell on a region
    border is counted once. An interrupted run keeps what it finished: rerun with --resume to go on.
    For research use only, not for diagnosis.
    """
    from cytolens.cli.output import print_json, print_table
    from cytolens.inference.parallel import ModelSpec
    from cytolens.inference.slide import predict_slides
    from cytolens.io.output_run import OutputRun
    from cytolens.io.validation import check_number

    if mpp is not None:
        check_number(mpp, "--mpp", low=0, low_open=True)
    spec = ModelSpec(model, classifier, device, backend, {"flips": True} if flips else {})
    sizes = {name: value for name, value in (("tile", tile_size), ("overlap", overlap)) if value is not None}
    with OutputRun(out, exist_ok=exist_ok, reads=paths, resumable=True, resume=resume) as run:
        summaries = predict_slides(
            spec, paths, run.path, mpp=mpp, workers=workers, scheduler=scheduler, resume=resume,
            tissue=not no_tissue_mask, show_progress=not as_json, **sizes,
        )
    if as_json:
        print_json({"out": str(out), "slides": [summary.as_dict() for summary in summaries]})
        return
    for summary in summaries:
        area = summary.tissue_mm2
        rows = [(summary.slide, name, count, "" if not area else round(count / area, 1))
                for name, count in summary.counts.items()]
        tissue = "unknown µm/px" if area is None else f"{area:.3g} mm² of tissue"
        print_table(
            f"{summary.slide}: {summary.shape[1]}x{summary.shape[0]} px, {tissue}, {summary.regions_run} of "
            f"{summary.regions} regions run (written to {out})", ["slide", "class", "cells", "cells per mm²"], rows,
        )
    typer.echo("For research use only, not for diagnosis.")
