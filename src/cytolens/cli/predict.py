"""``cytolens predict``: find and classify cells in images and write every output."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cytolens.cli.options import BackendOption, DeviceOption, JsonOption

DEFAULT_MODEL = "blood-cells"


def predict(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("cytolens-out"),
    model: Annotated[str, typer.Option("--model", "-m", help="Bundled model name or checkpoint file.")] = DEFAULT_MODEL,
    score_threshold: Annotated[
        float | None,
        typer.Option(
            "--score-threshold", min=0.0, max=1.0, help="Keep cells scoring at least this [default: the model's]."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")] = 1,
    outputs: Annotated[
        str, typer.Option("--outputs", help="Comma-separated outputs: csv, coco, geojson, overlay, counts, napari.")
    ] = "csv,coco,geojson,overlay,counts,napari",
    ratio: Annotated[
        list[str] | None, typer.Option("--ratio", help="Count ratio for counts.csv, e.g. RBC:WBC (repeatable).")
    ] = None,
    mpp: Annotated[
        float | None, typer.Option("--mpp", help="µm per pixel of the images, checked against the model.")
    ] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Look for images in sub-folders too.")] = False,
    exist_ok: Annotated[
        bool, typer.Option("--exist-ok", help="Replace an earlier run in --out (whole, when this run ends).")
    ] = False,
    device: DeviceOption = "auto",
    backend: BackendOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Find and classify cells in images; write cells.csv, counts.csv, COCO, QuPath GeoJSON and overlays.

    An unreadable image is reported in one line and skipped; the others complete, and the exit code is 1.
    --out must be new or empty unless --exist-ok; the run is written beside it and moved into place when
    it ends, so --out never holds a mix of runs, and a second run into it at the same time is refused.
    For research use only, not for diagnosis.
    """
    import logging

    from cytolens.cli.output import print_json, print_table
    from cytolens.errors import DataError
    from cytolens.inference.model import load_model
    from cytolens.inference.sources import expand_inputs
    from cytolens.io.output_run import OutputRun
    from cytolens.progress import progress
    from cytolens.results.counts import parse_ratio
    from cytolens.results.writers import PredictionWriter

    log = logging.getLogger("cytolens")
    files = expand_inputs(paths, recursive=recursive)
    chosen = [name.strip() for name in outputs.split(",") if name.strip()]
    failed: list[str] = []
    with OutputRun(out, exist_ok=exist_ok, reads=files) as run:
        cell_model = load_model(model, device=device, backend=backend)
        ratios = [parse_ratio(text, cell_model.classes) for text in ratio or []]
        if not ratios:
            ratios = list(cell_model.card.report.ratios)
        totals = dict.fromkeys(cell_model.classes, 0)
        items = cell_model.predict_iter(files, batch_size=batch_size, score_threshold=score_threshold, mpp=mpp)
        writer = PredictionWriter(run.path, cell_model.classes, chosen, ratios)
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
