"""Cost of Monte-Carlo dropout passes against one plain pass, on 2 CPU cores (GitHub issue 12).

    python benchmarks/mc_dropout_cost.py [--passes 20] [--dropout 0.1] [--images 3] [--smoke]

Seconds per image (wall, and CPU seconds of the process, less sensitive to other work on a shared machine) of
``Model.predict`` (one plain pass) and of ``Model.passes_iter`` with ``--passes`` passes (the plain one included),
both on torch, images given as arrays so that file decoding is not counted, after one warm-up image:

- ``blood-cells`` (FCOS boxes, trained without head dropout: the passes put ``--dropout`` on the pyramid
  features entering its head) on the 3 bundled BCCD examples and ``--images`` BCCD-TXL test images;
- ``rbc-morphology`` (point FCN -> 13-class patch classifier: ``--dropout`` before the point heads, the
  classifier's own 0.2 in its head) on ``--images`` Chula RBC-12 test images.

The passes compute the trunk (backbone + FPN; everything before the point heads; the classifier's features of
each window and view) once per image or tile and run the heads ``N`` times, so the ratio ``passes / plain``
is far below ``N`` (what ``N`` independent predictions would cost). Results:
``benchmarks/results/mc_dropout_cost.json``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import common

NAME = "mc_dropout_cost"
CHULA_SPEC = common.REPO / "configs" / "chula-split.yaml"
EXAMPLES = common.REPO / "src" / "cytolens" / "examples" / "bccd" / "JPEGImages"
BCCD_TXL_TEST = common.REPO.parent / "shared" / "datasets" / "bccd-txl" / "images" / "test"


def blood_images(count: int) -> list[tuple[str, np.ndarray]]:
    """The bundled examples and the first ``count`` BCCD-TXL test images, named."""
    from cytolens.io.images import read_image

    paths = [*sorted(EXAMPLES.glob("*.jpg")), *sorted(BCCD_TXL_TEST.glob("*.jpg"))[:count]]
    return [(path.name, read_image(path)) for path in paths]


def chula_images(count: int) -> list[tuple[str, np.ndarray]]:
    """The first ``count`` images of the Chula RBC-12 test split, named."""
    from cytolens.io.images import read_image
    from cytolens.io.spec import load_data

    images = load_data(CHULA_SPEC, split="test").images[:count]
    return [(Path(image.path).name, read_image(image.path)) for image in images]


def clocked(run: Callable[[], Any]) -> tuple[Any, float, float]:
    """What ``run()`` returns, the wall seconds and the CPU seconds of this process it took."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = run()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def timed(model: Any, images: list[tuple[str, np.ndarray]], passes: int, dropout: float) -> dict[str, Any]:
    """Per image: wall and CPU seconds of one plain prediction and of ``passes`` passes, and the cells found."""
    model.predict(images[0][1])  # warm-up
    rows = []
    for name, pixels in images:
        [plain], plain_wall, plain_cpu = clocked(lambda pixels=pixels: model.predict(pixels))
        [(_, found)], passes_wall, passes_cpu = clocked(
            lambda pixels=pixels: list(model.passes_iter(pixels, passes=passes, dropout=dropout))
        )
        rows.append({
            "image": name,
            "cells": len(plain.cells),
            "cells_per_pass": [len(cells) for cells in found.cells],
            "plain_seconds": round(plain_wall, 3),
            "passes_seconds": round(passes_wall, 3),
            "plain_cpu_seconds": round(plain_cpu, 3),
            "passes_cpu_seconds": round(passes_cpu, 3),
        })
        common.log.info("%s: %d cells, plain %.2f s (CPU %.2f s), %d passes %.2f s (CPU %.2f s)", name,
                        len(plain.cells), plain_wall, plain_cpu, passes, passes_wall, passes_cpu)  # fmt: skip
    means = {key: float(np.mean([row[key] for row in rows])) for key in rows[0] if key.endswith("seconds")}
    return {
        "images": len(rows),
        "plain_seconds_per_image": round(means["plain_seconds"], 3),
        "passes_seconds_per_image": round(means["passes_seconds"], 3),
        "ratio": round(means["passes_seconds"] / means["plain_seconds"], 2),
        "plain_cpu_seconds_per_image": round(means["plain_cpu_seconds"], 3),
        "passes_cpu_seconds_per_image": round(means["passes_cpu_seconds"], 3),
        "cpu_ratio": round(means["passes_cpu_seconds"] / means["plain_cpu_seconds"], 2),
        "independent_passes_seconds_per_image": round(passes * means["plain_seconds"], 3),
        "per_image": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=20, help="passes N, the plain one included")
    parser.add_argument("--dropout", type=float, default=0.1, help="head dropout of the detectors in the passes")
    parser.add_argument("--images", type=int, default=3, help="BCCD-TXL and Chula test images")
    parser.add_argument("--smoke", action="store_true", help="1 image per set and 3 passes, to check the script")
    args = parser.parse_args()
    common.setup()
    from cytolens.inference.model import load_model

    passes, count = (3, 1) if args.smoke else (args.passes, args.images)
    cases = {
        "blood-cells": timed(load_model("blood-cells", device="cpu", backend="torch"),
                             blood_images(count)[: 1 if args.smoke else None], passes, args.dropout),
        "rbc-morphology": timed(load_model("rbc-morphology", device="cpu"), chula_images(count), passes, args.dropout),
    }  # fmt: skip
    figures = {
        f"{name}_{key}": case[key]
        for name, case in cases.items()
        for key in ("plain_seconds_per_image", "passes_seconds_per_image", "ratio", "cpu_ratio")
    }
    common.write_result(
        NAME if not args.smoke else f"{NAME}_smoke",
        {**figures, "cases": cases},
        {},
        settings={"passes": passes, "dropout": args.dropout, "backend": "torch", "threads": 2},
        notes="Measured on a CPU shared with other work: compare plain and passes of one run (CPU ratio), not runs.",
    )


if __name__ == "__main__":
    main()
