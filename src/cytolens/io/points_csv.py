"""Point annotations in one CSV file: a header, then one point a row: ``image,x,y,class[,score]``.

Convention: ``x, y`` are cytolens coordinates (pixels from the top-left corner of the image, so the
centre of pixel ``(col, row)`` is ``(col + 0.5, row + 0.5)``); nothing is converted. ``image`` is the
image path, relative to the CSV's folder or absolute. An empty ``class`` is an unclassified point; an
optional ``score`` column marks predictions. A row with empty ``x`` and ``y`` lists an image without
points (so that such images survive a round trip). An optional ``image_id`` column keeps image ids
that are not the file stem; it is written only when needed. Columns may come in any order. Image
sizes are read from the image headers.

:func:`write_napari` also writes napari Points-layer CSVs, one per image, with columns
``index,axis-0,axis-1,class[,score][,p_<class>...]``: axis 0 is the row (y) and axis 1 the column (x), in
napari's pixel-index convention where an integer coordinate is a pixel centre, so ``axis-0 = y - 0.5`` and
``axis-1 = x - 0.5``. Every cell is a point (a box by its centre); napari reads the other columns as
point properties (``class``, empty for an unclassified cell; ``score`` when the cells have scores; one
``p_<class>`` column per class, named as in ``cells.csv``, when they carry class probabilities, as a patch
classifier or a detect -> classify pipeline gives), so the points can be coloured by class
(``face_color="class"``) or by a probability, or filtered by score. napari's own CSV reader takes every column
but ``index`` and ``axis-*`` as a property, reading numbers as numbers; :func:`read` reads points CSVs, not these.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import DataError
from cytolens.io.atomic import atomic_write
from cytolens.io.columns import probability_columns
from cytolens.io.images import image_size
from cytolens.io.paths import output_file, portable_path, resolve_path
from cytolens.io.point_checks import clip_points
from cytolens.io.registry import Capabilities
from cytolens.io.text import read_text
from cytolens.io.validation import ClassNames, check_number, text_number

CAPABILITIES = Capabilities(points=True, unclassified_points=True, scores=True)

COLUMNS = ("image", "x", "y", "class")
NAPARI_COLUMNS = ("index", "axis-0", "axis-1")


def _number(row: dict, key: str, source: Path, number: int) -> float:
    return check_number(text_number(row[key].strip()), f"line {number}: {key}", source)


def _rows(path: Path) -> tuple[list[dict], bool]:
    """The data rows of the CSV and whether it has a score column."""
    reader = csv.DictReader(io.StringIO(read_text(path, "points CSV file"), newline=""))
    try:
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in COLUMNS if name not in header]
        if missing:
            raise DataError(path, f"header lacks column(s) {', '.join(missing)} (expected {','.join(COLUMNS)})")
        reader.fieldnames = header
        rows = list(reader)
    except csv.Error as error:
        raise DataError(path, f"cannot parse CSV ({error})") from None
    return rows, "score" in header


def read(path: Path, classes: list[str] | None = None) -> Dataset:
    """Read a points CSV (``path`` is the ``.csv`` file, or a folder holding ``points.csv``).

    Raises:
        DataError: If the file, a column or an image is missing, a value is not a number, or a class
            is not in ``classes``.

    """
    path = path / "points.csv" if path.is_dir() else path
    rows, has_scores = _rows(path)
    names = ClassNames(classes)
    grouped: dict[str, dict] = {}
    for number, row in enumerate(rows, start=2):
        if None in row.values() or None in row:
            raise DataError(path, f"line {number}: wrong number of fields")
        image_name = row["image"].strip()
        if not image_name:
            raise DataError(path, f"line {number}: empty image")
        image_path = resolve_path(image_name, path.parent)
        image_id = (row.get("image_id") or "").strip() or image_path.stem
        entry = grouped.setdefault(image_id, {"path": image_path, "points": [], "labels": [], "scores": []})
        if entry["path"] != image_path:
            raise DataError(path, f"line {number}: image id {image_id!r} already names {entry['path']}")
        if not row["x"].strip() and not row["y"].strip():
            continue  # an image without points
        entry["points"].append([_number(row, "x", path, number), _number(row, "y", path, number)])
        name = row["class"].strip()
        entry["labels"].append(names.index(name, path, f"line {number}") if name else UNCLASSIFIED)
        if has_scores:
            entry["scores"].append(_number(row, "score", path, number))
    images = []
    for image_id, entry in grouped.items():
        width, height = image_size(entry["path"])
        points = clip_points(np.array(entry["points"]), width, height, path)
        cells = Cells(centres=points, labels=entry["labels"], scores=entry["scores"] if has_scores else None)
        images.append(AnnotatedImage(entry["path"], width, height, image_id, cells=cells))
    if not images:
        raise DataError(path, "holds no rows")
    return Dataset(names.names, images, {}, path.parent.name)


def _value(value: float) -> str:
    return repr(float(value))


def _finite(value: float) -> str:
    """A number as :func:`_value` writes it, or empty when it is not finite."""
    return _value(value) if np.isfinite(value) else ""


def write(dataset: Dataset, out: Path) -> None:
    """Write ``dataset``'s points to one CSV (``out``, or ``out/points.csv`` when ``out`` is a folder).

    Images without points get one row with empty ``x, y``. A ``score`` column is written when any image
    has point scores, an ``image_id`` column when an image id is not its file stem.
    """
    out = output_file(out, ".csv", "points.csv")
    with_scores = any(image.cells.point_cells().scores is not None for image in dataset.images)
    with_ids = any(image.image_id != image.path.stem for image in dataset.images)
    header = [*COLUMNS, *(["score"] if with_scores else []), *(["image_id"] if with_ids else [])]
    with atomic_write(out, "w") as handle:
        writer = csv.DictWriter(handle, header, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for image in dataset.images:
            base = {"image": portable_path(image.path, out.parent), "image_id": image.image_id}
            cells = image.cells.point_cells()
            if not len(cells):
                writer.writerow(base)
            scores = cells.scores if cells.scores is not None else [None] * len(cells)
            for (x, y), label, score in zip(cells.centres, cells.labels, scores, strict=True):
                writer.writerow({
                    **base, "x": _value(x), "y": _value(y),
                    "class": dataset.classes[label] if label != UNCLASSIFIED else "",
                    "score": _value(score) if score is not None else "",
                })


def write_napari(dataset: Dataset, out_folder: Path) -> list[Path]:
    """Write one napari Points-layer CSV per image, ``out_folder/<image_id>.csv`` (see the module doc).

    Returns:
        The files written, in dataset order.

    """
    written = []
    for image in dataset.images:
        path = out_folder / f"{image.image_id}.csv"
        cells = image.cells
        names = [dataset.classes[label] if label != UNCLASSIFIED else "" for label in cells.labels]
        with_scores, with_probabilities = cells.scores is not None, cells.probabilities is not None
        header = [*NAPARI_COLUMNS, "class", *(["score"] if with_scores else [])]
        header += probability_columns(dataset.classes) if with_probabilities else []
        with atomic_write(path, "w") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            for index, ((x, y), name) in enumerate(zip(cells.centres, names, strict=True)):
                row = [index, _value(y - 0.5), _value(x - 0.5), name]
                row += [_finite(cells.scores[index])] if with_scores else []
                row += [_finite(value) for value in cells.probabilities[index]] if with_probabilities else []
                writer.writerow(row)
        written.append(path)
    return written
