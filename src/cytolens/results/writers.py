"""Writing prediction outputs as they are produced, so that a failure keeps the tables of the images done.

Per image: an overlay PNG (``overlays/<stem>.png``) and a QuPath GeoJSON (``geojson/<stem>.geojson``).
For the run: ``cells.csv`` (one row per cell), ``counts.csv`` (per-image counts, percentages and
ratios); for box models ``predictions.coco.json`` (a COCO dataset whose annotations carry scores,
readable by COCO tools and by ``cytolens evaluate --predictions``) and ``coco_results.json`` (the plain
COCO results list for ``COCO.loadRes``, image ids as in the former); for point models
``napari/<stem>.csv`` (napari Points layer order: row = y, column = x, pixel-centre convention).
Run-level files are rewritten atomically at most every :data:`FLUSH_SECONDS` while images come in, and
when the writer is closed, so that a long run neither loses its tables nor rewrites them after each image.
The writer writes into the folder it is given; ``cytolens predict`` gives it the staging folder of an
:class:`~cytolens.io.output_run.OutputRun`, so that ``--out`` only ever holds one whole run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cytolens.data.annotations import Dataset
from cytolens.io.atomic import atomic_write, write_text
from cytolens.io.coco import to_coco_dict, to_results
from cytolens.io.points_csv import write_napari
from cytolens.results.counts import counts_table
from cytolens.results.result import Result

OUTPUTS = ("csv", "coco", "geojson", "overlay", "counts", "napari")
"""Names of the outputs ``cytolens predict --outputs`` can choose from."""

FLUSH_SECONDS = 10.0
"""Longest time between rewrites of the run-level files during a run."""

RESEARCH_NOTICE = "cytolens output: for research use only, not for diagnosis."


def _unique_stem(result: Result, taken: set[str]) -> str:
    stem = result.path.stem
    candidate, n = stem, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}-{n}"
    taken.add(candidate)
    return candidate


class PredictionWriter:
    """Accumulates results and writes the chosen outputs under ``out``.

    Args:
        out: Output folder.
        classes: The model's class names.
        outputs: Which outputs to write (see :data:`OUTPUTS`).
        ratios: Count ratios for ``counts.csv``, as ``(numerator, denominator)`` class names.

    """

    def __init__(
        self,
        out: str | Path,
        classes: Sequence[str],
        outputs: Sequence[str] = OUTPUTS,
        ratios: Sequence[tuple[str, str]] = (),
    ) -> None:
        unknown = sorted(set(outputs) - set(OUTPUTS))
        if unknown:
            raise ValueError(f"unknown outputs {', '.join(unknown)}; choose from {', '.join(OUTPUTS)}")
        self.out = Path(out)
        self.classes = list(classes)
        self.outputs = set(outputs)
        self.ratios = list(ratios)
        self.results: list[Result] = []
        self._stems: set[str] = set()
        self._flushed = time.monotonic()
        self.out.mkdir(parents=True, exist_ok=True)

    def add(self, result: Result, image: np.ndarray | None = None) -> None:
        """Write the per-image outputs of ``result`` and refresh the run-level files.

        If a per-image output cannot be written, those already written for this image are removed
        before the error is raised, so that the files on disk and the tables cover the same images.
        """
        stem = _unique_stem(result, self._stems)
        result = replace(result, image_id=stem)  # keys COCO image ids: images named alike in two folders stay apart
        written: list[Path] = []
        try:
            if "overlay" in self.outputs:
                written.append(self.out / "overlays" / f"{stem}.png")
                with atomic_write(written[-1], "wb") as handle:
                    Image.fromarray(result.plot(image)).save(handle, format="PNG")
            if "geojson" in self.outputs:
                written.append(self.out / "geojson" / f"{stem}.geojson")
                write_text(written[-1], json.dumps(result.to_geojson()))
            if "napari" in self.outputs and result.kind == "points":
                written.append(self.out / "napari" / f"{stem}.csv")
                write_napari(Dataset(self.classes, [result]), self.out / "napari")
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        self.results.append(result)
        if time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self.flush()

    def close(self) -> None:
        """Write the run-level files with every result (call at the end of the run, also after a failure)."""
        self.flush()

    def flush(self) -> None:
        """Rewrite the run-level files from all results so far."""
        self._flushed = time.monotonic()
        if "csv" in self.outputs:
            frames = [result.to_dataframe() for result in self.results]
            table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
            write_text(self.out / "cells.csv", table.to_csv(index=False))
        if "counts" in self.outputs:
            write_text(
                self.out / "counts.csv", counts_table(self.results, self.classes, self.ratios).to_csv(index=False)
            )
        if "coco" in self.outputs and self.results and self.results[0].kind == "boxes":
            dataset = Dataset(self.classes, list(self.results), name="predictions")
            document = to_coco_dict(dataset, root=self.out)
            document["info"] = {"description": RESEARCH_NOTICE}
            write_text(self.out / "predictions.coco.json", json.dumps(document))
            write_text(self.out / "coco_results.json", json.dumps(to_results(dataset)))
