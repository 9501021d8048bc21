"""The outputs of ``cytolens slide``, written as regions finish so that memory does not grow with the slide.

- Part files: each finished region's cells (its candidates, in level-0 slide pixels, with whether its core owns
  each) in one Parquet file written atomically (:func:`write_part`, :func:`read_part`); a resumed run skips the
  regions whose part exists.
- :class:`SlideTables`: the cells kept, appended slide by slide and region by region to ``cells.parquet`` (one
  Parquet row group per region, via ``pyarrow.parquet.ParquetWriter``), ``cells.csv`` (the columns of
  ``predict``'s, with ``slide`` for ``image``) and one QuPath ``geojson/<slide>.geojson`` per slide (features
  streamed as they come); ``summary.csv`` (per slide and class: cells, tissue mm², cells per mm²; per count
  ratio of the model: its value) when closed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cytolens.data.cells import Cells
from cytolens.errors import DataError
from cytolens.io.atomic import atomic_write
from cytolens.io.columns import probability_columns
from cytolens.io.geojson import to_feature_collection
from cytolens.results.result import Result

BOX_COLUMNS = ("x1", "y1", "x2", "y2")


def write_part(path: Path, cells: Cells, owned: np.ndarray) -> None:
    """Write a region's candidate cells and which of them its core owns, atomically, as Parquet."""
    columns: dict[str, Any] = {"x": cells.centres[:, 0], "y": cells.centres[:, 1], "label": cells.labels,
                               "score": cells.scores, "owned": np.asarray(owned, dtype=bool)}
    if cells.boxes is not None:
        columns.update(zip(BOX_COLUMNS, cells.boxes.T, strict=True))
    if cells.probabilities is not None:
        columns.update({f"p{index}": values for index, values in enumerate(cells.probabilities.T)})
    with atomic_write(path, "wb") as handle:
        pq.write_table(pa.table(columns), handle)


def read_part(path: Path) -> tuple[Cells, np.ndarray]:
    """A region's candidate cells and which of them its core owns (see :func:`write_part`).

    Raises:
        DataError: If the file cannot be read as a part file.

    """
    try:
        table = pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowException) as error:
        raise DataError(path, f"cannot read a region's cells ({error})") from None
    probabilities = [name for name in table.columns if name.startswith("p") and name[1:].isdigit()]
    cells = Cells(
        centres=table[["x", "y"]].to_numpy(np.float64),
        boxes=table[list(BOX_COLUMNS)].to_numpy(np.float64) if "x1" in table else None,
        labels=table["label"].to_numpy(np.int64),
        scores=table["score"].to_numpy(np.float64),
        probabilities=table[sorted(probabilities, key=lambda name: int(name[1:]))].to_numpy(np.float64)
        if probabilities else None,
    )
    return cells, table["owned"].to_numpy(bool)


def _schema(classes: Sequence[str], boxes: bool, probabilities: bool) -> pa.Schema:
    names = ["x", "y"]
    fields = [pa.field("slide", pa.string()), *(pa.field(name, pa.float64()) for name in names),
              pa.field("class", pa.string()), pa.field("score", pa.float64())]
    fields += [pa.field(name, pa.float64()) for name in BOX_COLUMNS] if boxes else []
    fields += [pa.field(name, pa.float64()) for name in probability_columns(classes)] if probabilities else []
    return pa.schema(fields)


class SlideTables:
    """Streams the cells kept on slides into ``cells.parquet``, ``cells.csv`` and ``geojson/<slide>.geojson``.

    Args:
        out: The output folder.
        classes: The model's class names.
        boxes: Whether cells have boxes (box models).
        probabilities: Whether cells carry class probabilities.
        ratios: Count ratios of the model, as ``(numerator, denominator)`` class names, for ``summary.csv``.

    """

    def __init__(
        self, out: Path, classes: Sequence[str], boxes: bool, probabilities: bool,
        ratios: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.classes = list(classes)
        self.ratios = list(ratios)
        self.schema = _schema(classes, boxes, probabilities)
        self._parquet = pq.ParquetWriter(self.out / "cells.parquet", self.schema)
        self._csv: IO[str] = open(self.out / "cells.csv", "w", encoding="utf-8", newline="")  # noqa: SIM115
        self._csv.write(",".join(self.schema.names) + "\n")
        self._geojson: IO[str] | None = None
        self._features = 0
        self.rows: list[dict[str, Any]] = []

    def start(self, slide: str) -> None:
        """Begin the cells of ``slide`` (its id): opens its GeoJSON file."""
        self._end_geojson()
        path = self.out / "geojson" / f"{slide}.geojson"
        path.parent.mkdir(exist_ok=True)
        self._geojson = open(path, "w", encoding="utf-8")  # noqa: SIM115
        self._geojson.write('{"type": "FeatureCollection", "features": [')
        self._features = 0

    def add(self, result: Result) -> None:
        """Append the cells of one region of the slide :meth:`start` began (``result.image_id``: the slide's id)."""
        if not len(result.cells):
            return
        table = result.to_dataframe().rename(columns={"image": "slide"})
        self._parquet.write_table(pa.Table.from_pandas(table[self.schema.names], schema=self.schema,
                                                       preserve_index=False))
        table[self.schema.names].to_csv(self._csv, header=False, index=False)
        assert self._geojson is not None, "start() a slide before adding its cells"
        for feature in to_feature_collection(result, self.classes)["features"]:
            self._geojson.write(("," if self._features else "") + json.dumps(feature))
            self._features += 1

    def finish(self, slide: str, counts: dict[str, int], tissue_mm2: float | None) -> None:
        """End ``slide``: its rows of ``summary.csv`` from its counts per class and tissue area (``None``: unknown)."""
        self._end_geojson()
        for name, count in counts.items():
            per_mm2 = count / tissue_mm2 if tissue_mm2 else math.nan
            self.rows.append({"slide": slide, "class": name, "cells": count, "tissue_mm2": tissue_mm2,
                              "cells_per_mm2": per_mm2, "ratio": math.nan})
        for top, bottom in self.ratios:
            value = counts[top] / counts[bottom] if counts[bottom] else math.nan
            self.rows.append({"slide": slide, "class": f"{top}:{bottom}", "cells": None, "tissue_mm2": tissue_mm2,
                              "cells_per_mm2": math.nan, "ratio": float(f"{value:.3g}")})

    def _end_geojson(self) -> None:
        if self._geojson is not None:
            self._geojson.write("]}\n")
            self._geojson.close()
            self._geojson = None

    def close(self) -> None:
        """Close the tables and write ``summary.csv``."""
        self._end_geojson()
        self._parquet.close()
        self._csv.close()
        columns = ["slide", "class", "cells", "tissue_mm2", "cells_per_mm2", "ratio"]
        with atomic_write(self.out / "summary.csv") as handle:
            table = pd.DataFrame(self.rows, columns=columns).astype({"cells": "Int64"})
            table.to_csv(handle, index=False)


__all__ = ["SlideTables", "read_part", "write_part"]
