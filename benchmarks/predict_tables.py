"""Cost of the run-level tables of ``cytolens predict`` as a run grows (GitHub issue 9).

    python benchmarks/predict_tables.py [--images 2000] [--model blood-cells] [--smoke]

Runs ``cytolens predict`` (in this process, through the CLI) on a folder of ``--images`` hard-linked
copies of a bundled 640x480 example image and times the writer's run-level work: the rows appended
to ``cells.csv`` and ``counts.csv`` for each image, and the COCO files written when the run closes.
The figures are the seconds spent on it per block of 500 images (flat when the cost is linear in the
number of images), the seconds per image of the whole run, and the closing time.
Results: ``benchmarks/results/predict_tables.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import common

NAME = "predict_tables"
BLOCK = 500


def timed_run(folder: Path, out: Path, model: str, count: int) -> dict[str, Any]:
    """Predict ``folder`` into ``out`` with the CLI, timing the writer's table appends and its closing."""
    from typer.testing import CliRunner

    from cytolens.cli.main import app
    from cytolens.results.writers import PredictionWriter

    spent: list[float] = []  # seconds of run-level table work per image, in order
    closing: list[float] = []
    append, close = PredictionWriter._append, PredictionWriter.close

    def timed_append(self: PredictionWriter, name: str, table: Any) -> None:
        start = time.perf_counter()
        append(self, name, table)
        if name == "cells.csv":
            spent.append(0.0)
        spent[-1] += time.perf_counter() - start

    def timed_close(self: PredictionWriter) -> None:
        start = time.perf_counter()
        close(self)
        closing.append(time.perf_counter() - start)

    PredictionWriter._append, PredictionWriter.close = timed_append, timed_close
    try:
        start = time.perf_counter()
        result = CliRunner().invoke(app, ["predict", str(folder), "--model", model, "--out", str(out)])
        total = time.perf_counter() - start
    finally:
        PredictionWriter._append, PredictionWriter.close = append, close
    if result.exit_code != 0:
        raise RuntimeError(f"predict failed: {result.output}")
    if len(spent) != count:
        raise RuntimeError(f"timed {len(spent)} images of {count}")
    blocks = {f"{i + 1}-{i + BLOCK}": round(sum(spent[i : i + BLOCK]), 3) for i in range(0, count, BLOCK)}
    return {
        "table_seconds_per_block_of_500": blocks,
        "table_seconds_cumulative": {str(n): round(sum(spent[:n]), 3) for n in (500, 1000, 2000) if n <= count},
        "close_seconds": round(closing[0], 3),
        "run_seconds": round(total, 1),
        "run_seconds_per_image": round(total / count, 4),
    }


def main() -> None:
    """Measure and write the result file."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--model", default="blood-cells")
    parser.add_argument("--smoke", action="store_true", help="20 images, result in a temporary folder")
    args = parser.parse_args()
    common.setup(2)
    import cytolens.examples

    count = 20 if args.smoke else args.images
    source = next((cytolens.examples.path() / "JPEGImages").glob("*.jpg"))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "images"
        folder.mkdir()
        for index in range(count):
            os.link(source, folder / f"copy{index:05d}.jpg")
        figures = timed_run(folder, Path(scratch) / "out", args.model, count)
        folder_out = Path(scratch) if args.smoke else common.RESULTS
        path = common.write_result(
            NAME, figures, {}, folder=folder_out, images=count, image=source.name, model=args.model
        )
        print(path.read_text())


if __name__ == "__main__":
    main()
