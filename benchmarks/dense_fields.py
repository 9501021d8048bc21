"""Dense fields (GitHub issue 10): thousands of cells in one image, through a box model's tiles.

    python benchmarks/dense_fields.py [--model blood-cells] [--grids 2 3 4 6] [--out DIR] [--threads 2]

Synthetic dense fields: ``n`` x ``n`` mosaics of ``bccd-txl`` fields (640 x 480 each, edge to edge; the first
``n * n`` of the test fields, then the validation and training fields, each split in name order), up to 14 x 14
(8960 x 6720 pixels, about 4,500 cells). Per mosaic:

- cells found (at the model's score thresholds) per class, against the sum of its fields' true cells (TXL-PBC's
  complete boxes) and against the sum of the model's counts on the fields run separately;
- seconds: the whole ``model.predict`` of the image (an array in, the thresholded result out); the detector on
  every tile; merging the tiles' detections (:func:`~cytolens.inference.boxes.merge_tiles`, timed alone on the
  same detections); and, for scale, one :func:`torchvision.ops.batched_nms` over every tile's boxes at once;
- caps: the most detections any tile returned against the detector's cap (``detections_per_img``): a tile
  pinned at the cap would lose cells. The image itself has no cap.

Finished mosaics are kept as JSON files in ``--out/<model sha256[:12]>/`` and skipped when the command runs again.
The result goes to ``benchmarks/results/dense_fields.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import batched_nms

import common
import mosaics
from cytolens.data.annotations import Dataset
from cytolens.data.cells import Cells
from cytolens.errors import CytolensError
from cytolens.inference.boxes import Detections, detect_boxes, merge_tiles
from cytolens.inference.model import CellModel, load_model
from cytolens.io.digest import file_digest
from cytolens.io.images import read_image
from cytolens.io.spec import load_data
from cytolens.models.registry import resolve_model

NAME = "dense_fields"
TXL_DATA = common.REPO.parent / "shared" / "datasets" / "bccd-txl" / "data.yaml"
GRIDS = (2, 4, 6, 10, 14)
SPLITS = ("test", "val", "train")
"""Where the fields come from, in this order."""


class TimedDetector:
    """A detector that adds up the seconds it runs (``seconds``) and counts its calls' detections (``counts``)."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.seconds = 0.0
        self.counts: list[int] = []

    def __call__(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        start = time.perf_counter()
        found = self.detector(images)
        self.seconds += time.perf_counter() - start
        self.counts.extend(len(out["scores"]) for out in found)
        return found


def counts_by_class(labels: np.ndarray, classes: Sequence[str]) -> dict[str, int]:
    """How many of ``labels`` fall in each class."""
    return {name: int((labels == index).sum()) for index, name in enumerate(classes)}


def dense_mosaic(model: CellModel, truth: Dataset, fields_found: dict[str, dict[str, int]], grid: int) -> dict:
    """Cells, seconds and caps on the mosaic of the first ``grid`` x ``grid`` fields of ``truth``."""
    fields = truth.images[: grid * grid]
    pixels = mosaics.mosaic_pixels([read_image(field.path) for field in fields], grid)
    height, width = pixels.shape[:2]
    start = time.perf_counter()
    (result,) = model.predict([pixels])
    seconds = time.perf_counter() - start
    tiling = model.predictor.tiling
    windows = tiling.windows(width, height)
    detector = TimedDetector(model.detector or model.network)
    tiles = [pixels[rows.start : rows.stop, cols.start : cols.stop] for rows, cols in windows]
    parts: list[Detections] = detect_boxes(detector, tiles, model.device, None, per_pass=1)
    for part, (rows, cols) in zip(parts, windows, strict=True):
        part["boxes"] = part["boxes"] + [cols.start, rows.start, cols.start, rows.start]
    nms = model.card.thresholds.nms
    start = time.perf_counter()
    merged = merge_tiles(parts, windows, width, height, nms)
    merge_seconds = time.perf_counter() - start
    every = {key: torch.from_numpy(np.concatenate([part[key] for part in parts])) for key in parts[0]}
    start = time.perf_counter()
    batched_nms(every["boxes"], every["scores"], every["labels"], nms)
    nms_seconds = time.perf_counter() - start
    classes = list(model.classes)
    kept = Cells(labels=merged["labels"], scores=merged["scores"], boxes=merged["boxes"])
    kept = kept.scoring_at_least(model.thresholds.min_score, classes)
    found = counts_by_class(result.cells.labels, classes)
    true = {name: sum(counts_by_class(field.cells.labels, truth.classes)[name] for field in fields) for name in classes}
    on_fields = {name: sum(fields_found[field.image_id][name] for field in fields) for name in classes}
    cap = getattr(model.network, "roi_heads", model.network).detections_per_img
    return {
        "grid": grid,
        "size": [width, height],
        "fields": [field.image_id for field in fields],
        "tiles": len(windows),
        "found": found,
        "true": true,
        "fields_run_separately": on_fields,
        "found_minus_true": {name: found[name] - true[name] for name in classes},
        "found_minus_fields": {name: found[name] - on_fields[name] for name in classes},
        "cells_found": sum(found.values()),
        "cells_true": sum(true.values()),
        "merge_reproduces_predict": bool(np.array_equal(np.sort(kept.scores), np.sort(result.cells.scores))),
        "tile_detections": {"total": int(sum(detector.counts)), "most_in_a_tile": max(detector.counts), "cap": cap},
        "pinned_at_cap": max(detector.counts) >= cap,
        "seconds": round(seconds, 2),
        "detector_seconds": round(detector.seconds, 2),
        "merge_seconds": round(merge_seconds, 4),
        "batched_nms_all_boxes_seconds": round(nms_seconds, 4),
    }


def run(args: argparse.Namespace) -> Path:
    """Measure every grid not measured yet and write the result file."""
    path = resolve_model(args.model)
    state = args.out / file_digest(path)[:12]
    model = load_model(args.model, device="cpu")
    splits = [load_data(args.data, "yolo", split) for split in SPLITS]
    fields = [image for split in splits for image in sorted(split.images, key=lambda image: image.image_id)]
    truth = Dataset(splits[0].classes, fields)
    needed = fields[: max(args.grids) ** 2]

    def on_fields() -> dict[str, dict[str, int]]:
        results = model.predict([read_image(field.path) for field in needed])
        return {field.image_id: counts_by_class(result.cells.labels, model.classes)
                for field, result in zip(needed, results, strict=True)}

    fields_found = common.once(state / f"fields{len(needed)}.json", on_fields)
    rows = [common.once(state / f"grid{grid}.json", lambda grid=grid: dense_mosaic(model, truth, fields_found, grid))
            for grid in args.grids]
    for row in rows:
        print(
            f"{row['grid']}x{row['grid']} ({row['size'][0]}x{row['size'][1]}, {row['tiles']} tiles): "
            f"{row['cells_found']} cells found, {row['cells_true']} true, fields run separately "
            f"{sum(row['fields_run_separately'].values())} (RBC {row['found']['RBC']} / {row['true']['RBC']} / "
            f"{row['fields_run_separately']['RBC']}); {row['seconds']} s, detector {row['detector_seconds']} s, "
            f"merge {row['merge_seconds']} s ({row['tile_detections']['total']} tile boxes; one NMS over them "
            f"{row['batched_nms_all_boxes_seconds']} s); most boxes in a tile "
            f"{row['tile_detections']['most_in_a_tile']} (cap {row['tile_detections']['cap']})"
        )
    most = max(row["tile_detections"]["most_in_a_tile"] for row in rows)
    targets = {
        "most_detections_in_a_tile_below_cap": common.target(
            most, rows[-1]["tile_detections"]["cap"] - 1, higher_is_better=False
        ),
    }
    return common.write_result(
        NAME, {"mosaics": rows}, targets, model={"source": args.model, "path": str(path)},
        settings={"threads": args.threads, "data": f"{args.data} ({', '.join(SPLITS)})", "grids": list(args.grids)},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="blood-cells", help="bundled model name or box checkpoint")
    parser.add_argument("--data", type=Path, default=TXL_DATA, help="the bccd-txl data.yaml (YOLO layout, 3 splits)")
    parser.add_argument("--grids", type=int, nargs="+", default=list(GRIDS), help="fields per mosaic side")
    parser.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "cytolens-bench" / NAME, help="finished parts"
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    args = parser.parse_args()
    common.setup(args.threads)
    try:
        run(args)
    except CytolensError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
