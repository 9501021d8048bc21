"""Writing prediction outputs as they are produced, at a cost linear in the number of cells.

Per image: an overlay PNG (``overlays/<stem>.png``) and a QuPath GeoJSON (``geojson/<stem>.geojson``).
For the run: ``cells.csv`` (one row per cell), ``counts.csv`` (per-image counts, percentages and
ratios); for box models ``predictions.coco.json`` (a COCO dataset whose annotations carry scores,
readable by COCO tools and by ``cytolens evaluate --predictions``) and ``coco_results.json`` (the plain
COCO results list for ``COCO.loadRes``, image ids as in the former); for point models
``napari/<stem>.csv`` (napari Points layer order: row = y, column = x, pixel-centre convention).
The rows of ``cells.csv`` and ``counts.csv`` are appended as each image's result arrives; the COCO files
are written once, when the writer is closed. An image's pixels are drawn and then let go: a run holds
the cells of the images done, never their pixels.
The writer writes into the folder it is given; ``cytolens predict`` gives it the staging folder of an
:class:`~cytolens.io.output_run.OutputRun`, so that ``--out`` only ever holds one whole run.
"""

from __future__ import annotations

import json
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
        self._started: set[str] = set()
        self.out.mkdir(parents=True, exist_ok=True)

    def add(self, result: Result, image: np.ndarray | None = None) -> None:
        """Write the per-image outputs of ``result`` and append its rows to the run-level tables.

        If an output cannot be written, what was already written for this image is removed (table rows
        included) before the error is raised, so that the files on disk and the tables cover the same images.

        Args:
            result: One image's cells.
            image: Its pixels, if ``result`` does not carry them (read from its file otherwise).

        """
        stem = _unique_stem(result, self._stems)
        # keys COCO image ids (images named alike in two folders stay apart); the pixels are let go once drawn
        kept = replace(result, image_id=stem, pixels=None)
        written: list[Path] = []
        sizes = {name: self._size(name) for name in ("cells.csv", "counts.csv")}
        try:
            if "overlay" in self.outputs:
                written.append(self.out / "overlays" / f"{stem}.png")
                with atomic_write(written[-1], "wb") as handle:
                    Image.fromarray(result.plot(image)).save(handle, format="PNG")
            if "geojson" in self.outputs:
                written.append(self.out / "geojson" / f"{stem}.geojson")
                write_text(written[-1], json.dumps(kept.to_geojson()))
            if "napari" in self.outputs and kept.kind == "points":
                written.append(self.out / "napari" / f"{stem}.csv")
                write_napari(Dataset(self.classes, [kept]), self.out / "napari")
            if "csv" in self.outputs:
                self._append("cells.csv", kept.to_dataframe())
            if "counts" in self.outputs:
                self._append("counts.csv", counts_table([kept], self.classes, self.ratios))
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            for name, size in sizes.items():
                if size is not None:
                    with open(self.out / name, "r+b") as handle:
                        handle.truncate(size)
            raise
        self.results.append(kept)

    def _size(self, name: str) -> int | None:
        """The size of run-level table ``name`` so far (``None`` before its first row)."""
        return (self.out / name).stat().st_size if name in self._started else None

    def _append(self, name: str, table: pd.DataFrame) -> None:
        """Append ``table``'s rows to run-level table ``name`` (its header first, with the first rows)."""
        with open(self.out / name, "a", encoding="utf-8", newline="") as handle:
            handle.write(table.to_csv(index=False, header=name not in self._started))
        self._started.add(name)

    def close(self) -> None:
        """Finish the run-level files: tables that got no row, and the COCO files (also after a failure)."""
        if "csv" in self.outputs and "cells.csv" not in self._started:
            write_text(self.out / "cells.csv", pd.DataFrame().to_csv(index=False))
        if "counts" in self.outputs and "counts.csv" not in self._started:
            write_text(self.out / "counts.csv", counts_table([], self.classes, self.ratios).to_csv(index=False))
        if "coco" in self.outputs and self.results and self.results[0].kind == "boxes":
            dataset = Dataset(self.classes, list(self.results), name="predictions")
            document = to_coco_dict(dataset, root=self.out)
            document["info"] = {"description": RESEARCH_NOTICE}
            write_text(self.out / "predictions.coco.json", json.dumps(document))
            write_text(self.out / "coco_results.json", json.dumps(to_results(dataset)))
