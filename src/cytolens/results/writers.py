"""Writing prediction outputs as they are produced, at a cost linear in the number of cells.

Each image is known by its id: the path relative to the input it was found under, without suffix
(:mod:`cytolens.inference.sources`; ``slideA/field1``), made unique with ``-2``, ``-3``... Per image: an
overlay PNG (``overlays/<id>.png``), a QuPath GeoJSON (``geojson/<id>.geojson``) and a napari Points-layer CSV
(``napari/<id>.csv``: every cell, a box by its centre, with its class, score and ``p_<class>`` probabilities
as point properties; row = y, column = x, pixel-centre convention). For the run: ``cells.csv`` (one row per
cell, with ``p_<class>`` probability columns when the model gives them), ``counts.csv`` (per-image counts,
percentages to one decimal, ratios to three significant digits); for images classified whole by a patch
classifier, ``images.csv`` (one row per image: the types called and ``p_<class>`` per class; part of the
``csv`` output; each such image counts as one cell of each type called); for box models
``predictions.coco.json`` (a COCO dataset whose annotations carry scores, readable by COCO tools and by
``cytolens evaluate --predictions``) and ``coco_results.json`` (the plain COCO results list for
``COCO.loadRes``, image ids as in the former); on request, ``label-studio.json`` (Label Studio tasks with the
cells as predictions) and ``label-studio.xml`` (the labelling config they fit). The rows of ``cells.csv``,
``images.csv`` and ``counts.csv`` are appended as each image's result arrives; the COCO and Label Studio files
are written once, when the writer is closed. An image's pixels are drawn and then let go: a run holds the
cells of the images done, never their pixels. The writer writes into the folder it is given; ``cytolens
predict`` gives it the staging folder of an :class:`~cytolens.io.output_run.OutputRun`, so that ``--out`` only
ever holds one whole run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cytolens.data.annotations import Dataset
from cytolens.io import label_studio
from cytolens.io.atomic import atomic_write, write_text
from cytolens.io.coco import to_coco_dict, to_results
from cytolens.io.points_csv import write_napari
from cytolens.results.counts import counts_table
from cytolens.results.result import Result

OUTPUTS = ("csv", "coco", "geojson", "overlay", "counts", "napari", "label-studio")
"""Names of the outputs ``cytolens predict --outputs`` can choose from."""
DEFAULT_OUTPUTS = OUTPUTS[:-1]
"""The outputs written unless others are chosen (Label Studio tasks on request)."""

RESEARCH_NOTICE = "cytolens output: for research use only, not for diagnosis."


def _unique(image_id: str, taken: set[str]) -> str:
    """``image_id``, or ``image_id-2``, ``-3``... when it is taken; the id returned is taken from then on."""
    candidate, n = image_id, 1
    while candidate in taken:
        n += 1
        candidate = f"{image_id}-{n}"
    taken.add(candidate)
    return candidate


class PredictionWriter:
    """Accumulates results and writes the chosen outputs under ``out``.

    Args:
        out: Output folder.
        classes: The model's class names.
        outputs: Which outputs to write (see :data:`OUTPUTS`).
        ratios: Count ratios for ``counts.csv``, as ``(numerator, denominator)`` class names.
        ids: The id of each image file (from :func:`cytolens.inference.sources.find_images`); an image
            not in it is known by its file stem.
        served_from: Label Studio's local-files document root: ``label-studio.json`` names the images by
            the URLs Label Studio serves them at (see :func:`cytolens.io.label_studio.local_files_url`).

    """

    def __init__(
        self,
        out: str | Path,
        classes: Sequence[str],
        outputs: Sequence[str] = DEFAULT_OUTPUTS,
        ratios: Sequence[tuple[str, str]] = (),
        ids: Mapping[Path, str] | None = None,
        served_from: Path | None = None,
    ) -> None:
        unknown = sorted(set(outputs) - set(OUTPUTS))
        if unknown:
            raise ValueError(f"unknown outputs {', '.join(unknown)}; choose from {', '.join(OUTPUTS)}")
        self.out = Path(out)
        self.classes = list(classes)
        self.outputs = set(outputs)
        self.ratios = list(ratios)
        self.ids = dict(ids or {})
        self.served_from = served_from
        self.results: list[Result] = []
        self._ids: set[str] = set()
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
        image_id = _unique(self.ids.get(result.path, result.path.stem), self._ids)
        # names the files and table rows, keys COCO image ids; the pixels are let go once drawn
        kept = replace(result, image_id=image_id, pixels=None)
        written: list[Path] = []
        sizes = {name: self._size(name) for name in ("cells.csv", "images.csv", "counts.csv")}
        try:
            if "overlay" in self.outputs:
                written.append(self.out / "overlays" / f"{image_id}.png")
                with atomic_write(written[-1], "wb") as handle:
                    Image.fromarray(result.plot(image)).save(handle, format="PNG")
            if "geojson" in self.outputs:
                written.append(self.out / "geojson" / f"{image_id}.geojson")
                write_text(written[-1], json.dumps(kept.to_geojson()))
            if "napari" in self.outputs:
                written.append(self.out / "napari" / f"{image_id}.csv")
                write_napari(Dataset(self.classes, [kept]), self.out / "napari")
            if "csv" in self.outputs:
                self._append("cells.csv", kept.to_dataframe())
                if kept.classified_whole:
                    self._append("images.csv", kept.image_table())
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

    def close(self, task_scores: Mapping[str, float] | None = None) -> None:
        """Finish the run-level files: empty tables, COCO and Label Studio files (also after a failure).

        Args:
            task_scores: A score per image id for the Label Studio tasks (Label Studio sorts its tasks by it; e.g. a
                ranking's relevance); none by default.

        """
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
        if "label-studio" in self.outputs:
            dataset = Dataset(self.classes, list(self.results), name="predictions")
            label_studio.write(dataset, self.out / "label-studio.json", self.served_from, task_scores)
            write_text(self.out / "label-studio.xml", label_studio.labelling_config(self.classes))
