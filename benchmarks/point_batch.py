"""Point models batch their images: ``cytolens predict --batch-size 4`` against ``--batch-size 1`` (GitHub issue 9).

    python benchmarks/point_batch.py [--model rbc-morphology-points] [--images 40] [--repeats 2] [--smoke]

Runs ``cytolens predict`` (in this process, through the CLI, so that start-up is not timed) on the
first ``--images`` images of the Chula RBC-12 test split (640 x 480, one tile each) with ``--batch-size
1`` and ``--batch-size 4``, alternately, ``--repeats`` times each, writing only ``cells.csv``. The figures
are each batch size's best wall time per image (model loading included, the same for both; after one
untimed warm-up run), whether the runs wrote the same cells, byte for byte, and the network's forward
passes alone per image at each batch size (same images, in this process).
Results: ``benchmarks/results/point_batch.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import common

NAME = "point_batch"
CHULA_SPEC = common.REPO / "configs" / "chula-split.yaml"
BATCH_SIZES = (1, 4)


def test_images(count: int) -> list[Path]:
    """The first ``count`` images of the Chula test split."""
    from cytolens.io.spec import load_data

    return [image.path for image in load_data(CHULA_SPEC, split="test").images[:count]]


def timed_predict(images: list[Path], model: str, batch_size: int, out: Path) -> tuple[float, str]:
    """Seconds of one ``cytolens predict`` run (in this process, through the CLI), and the ``cells.csv`` it wrote."""
    from typer.testing import CliRunner

    from cytolens.cli.main import app

    arguments = ["predict", *map(str, images), "--model", model, "--out", str(out), "--outputs", "csv",
                 "--batch-size", str(batch_size)]
    start = time.perf_counter()
    result = CliRunner().invoke(app, arguments)
    seconds = time.perf_counter() - start
    if result.exit_code != 0:
        raise RuntimeError(f"predict failed: {result.output}")
    return seconds, (out / "cells.csv").read_text(encoding="utf-8")


def network_seconds(images: list[Path], model: str, batch_size: int, repeats: int) -> float:
    """Best seconds per image of the network's forward passes alone over ``images`` in batches of ``batch_size``."""
    import numpy as np
    import torch

    from cytolens.inference.model import load_model
    from cytolens.io.images import read_image

    network = load_model(model, device="cpu").network
    pixels = torch.from_numpy(np.stack([read_image(path) for path in images])).permute(0, 3, 1, 2).float().div(255)
    best = float("inf")
    with torch.inference_mode():
        network(pixels[:batch_size])
        for _ in range(repeats):
            start = time.perf_counter()
            for first in range(0, len(pixels), batch_size):
                network(pixels[first : first + batch_size])
            best = min(best, (time.perf_counter() - start) / len(pixels))
    return best


def main() -> None:
    """Run the benchmark and write its result file."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="rbc-morphology-points")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="4 images, one run each; results in a temp folder")
    args = parser.parse_args()
    common.setup()
    count, repeats = (4, 1) if args.smoke else (args.images, args.repeats)
    images = test_images(count)
    seconds: dict[int, list[float]] = {size: [] for size in BATCH_SIZES}
    cells: dict[int, set[str]] = {size: set() for size in BATCH_SIZES}
    with tempfile.TemporaryDirectory() as folder:
        timed_predict(images[:1], args.model, 1, Path(folder) / "warm-up")  # first imports and allocations
        for repeat in range(repeats):
            for size in BATCH_SIZES:
                spent, table = timed_predict(images, args.model, size, Path(folder) / f"b{size}-{repeat}")
                seconds[size].append(round(spent, 2))
                cells[size].add(table)
                common.log.info("batch size %d, run %d: %.1f s for %d images", size, repeat + 1, spent, count)
    same = len(cells[1] | cells[4]) == 1
    per_image = {size: min(values) / count for size, values in seconds.items()}
    figures: dict[str, Any] = {
        "images": count,
        "cells": len(next(iter(cells[1])).splitlines()) - 1,
        "same_cells": same,
        "seconds_per_image_batch_1": round(per_image[1], 3),
        "seconds_per_image_batch_4": round(per_image[4], 3),
        "speedup": round(per_image[1] / per_image[4], 3),
        "network_seconds_per_image": {
            f"batch_{size}": round(network_seconds(images, args.model, size, repeats), 3) for size in BATCH_SIZES
        },
        "runs_seconds": {f"batch_{size}": values for size, values in seconds.items()},
    }
    targets = {
        "same_cells": {"value": same, "target": True, "met": same},
        "speedup": {"value": figures["speedup"], "target": "above 1", "met": figures["speedup"] > 1},
    }
    folder = Path(tempfile.mkdtemp()) if args.smoke else common.RESULTS
    common.write_result(NAME, figures, targets, folder, model=args.model, data="chula-rbc-12 test split (MIT)")


if __name__ == "__main__":
    main()
