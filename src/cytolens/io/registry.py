"""The registry of annotation formats, by the names used on the command line.

Each format lives in its own module of :mod:`cytolens.io` and defines:

- ``CAPABILITIES``: a :class:`Capabilities` saying what the format can hold;
- ``read(path: Path, classes: list[str] | None = None) -> Dataset`` if it can be read
  (``classes`` fixes the class order; names not in it are an error);
- ``write(dataset: Dataset, out: Path) -> None`` if it can be written.

Modules are imported on first use, so a format's optional dependency costs nothing until needed.
:func:`write_dataset` is the one place that warns about what a target format must drop.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from types import ModuleType

import numpy as np

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.errors import CytolensError, DataError
from cytolens.io.validation import check_finite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Capabilities:
    """What an annotation format can hold (``unclassified_points``: cells of unknown class, boxes too where it holds
    boxes).
    """

    boxes: bool = False
    points: bool = False
    unclassified_points: bool = False
    image_labels: bool = False
    scores: bool = False


FORMATS: dict[str, str] = {
    "voc": "cytolens.io.voc",
    "coco": "cytolens.io.coco",
    "yolo": "cytolens.io.yolo",
    "points": "cytolens.io.points_csv",
    "chula": "cytolens.io.chula",
    "crchisto": "cytolens.io.crchisto",
    "folders": "cytolens.io.folders",
    "masks": "cytolens.io.masks",
    "geojson": "cytolens.io.geojson",
    "label-studio": "cytolens.io.label_studio",
}
"""Format name on the command line to the module that implements it."""


def format_module(name: str) -> ModuleType:
    """The module implementing format ``name``.

    Raises:
        CytolensError: If no such format exists.

    """
    if name not in FORMATS:
        raise CytolensError(f"unknown format {name!r}; choose one of: {', '.join(FORMATS)}")
    return importlib.import_module(FORMATS[name])


def capabilities(name: str) -> Capabilities:
    """What format ``name`` can hold."""
    return format_module(name).CAPABILITIES


def read_dataset(path: str | Path, fmt: str, classes: list[str] | None = None) -> Dataset:
    """Read a dataset in format ``fmt`` from ``path``.

    Raises:
        CytolensError: If the format cannot be read.
        DataError: If a file is missing or malformed.

    """
    module = format_module(fmt)
    if not hasattr(module, "read"):
        raise CytolensError(f"format {fmt!r} can be written but not read")
    return module.read(Path(path), classes=classes)


def _dropped(image: AnnotatedImage, caps: Capabilities) -> tuple[AnnotatedImage, dict[str, int]]:
    """A copy of ``image`` without what ``caps`` cannot hold, and counts of what was removed."""
    cells, points = image.cells, ~image.cells.has_box
    dropped: dict[str, int] = {}
    unfit = {
        "boxes": ~points if not caps.boxes else None,
        "points": points if not caps.points else None,
        "unclassified points": (
            points & (cells.labels == UNCLASSIFIED) if caps.points and not caps.unclassified_points else None
        ),
        "unclassified boxes": (
            ~points & (cells.labels == UNCLASSIFIED) if caps.boxes and not caps.unclassified_points else None
        ),
    }
    drop = np.zeros(len(cells), dtype=bool)
    for kind, cut in unfit.items():
        if cut is not None and cut.any():
            dropped[kind] = int(cut.sum())
            drop |= cut
    cells = cells.select(~drop) if caps.boxes else cells.select(~drop).point_cells()
    labels = image.image_labels
    if not caps.image_labels and labels:
        dropped["image labels"] = len(labels)
        labels = []
    if not caps.scores:
        scored = 0 if cells.scores is None else int((~np.isnan(cells.scores)).sum())
        if scored:
            dropped["scores"] = scored
        cells = replace(cells, scores=None)
    copy = replace(image, cells=cells, image_labels=labels, image_scores=image.image_scores if caps.scores else None)
    return copy, dropped


def _check_writable(image: AnnotatedImage) -> None:
    """Refuse what no format may write: a coordinate or score that is not finite, an image id leading out of ``out``.

    Raises:
        DataError: Naming the image file.

    """
    boxes, points = image.cells.box_cells(), image.cells.point_cells()
    for values, what in ((boxes.boxes, "box"), (boxes.scores, "box score"), (points.centres, "point"),
                         (points.scores, "point score"), (image.image_scores, "image score")):
        if values is not None:
            check_finite(values, what, image.path)
    key = PurePosixPath(image.image_id)
    if key.is_absolute() or ".." in key.parts or "\\" in image.image_id:
        raise DataError(image.path, f"image id {image.image_id!r} would be written outside the output folder")


def write_dataset(dataset: Dataset, out: str | Path, fmt: str) -> dict[str, int]:
    """Write ``dataset`` to ``out`` in format ``fmt``, warning about anything the format cannot hold.

    Returns:
        Counts of what was dropped, by kind (``boxes``, ``points``, ``unclassified points``, ``unclassified boxes``,
        ``image labels``, ``scores``); empty when nothing was.

    Raises:
        CytolensError: If the format cannot be written.
        DataError: If an image holds a coordinate or score that is not finite (every format would
            write it wrongly: ``NaN`` is not JSON, Chula writes it as ``-9223372036854775808``), or its
            image id would lead out of ``out``; nothing is written then.

    """
    module = format_module(fmt)
    if not hasattr(module, "write"):
        raise CytolensError(f"format {fmt!r} can be read but not written")
    totals: dict[str, int] = {}
    kept = []
    for image in dataset.images:
        _check_writable(image)
        copy, dropped = _dropped(image, module.CAPABILITIES)
        kept.append(copy)
        for kind, count in dropped.items():
            totals[kind] = totals.get(kind, 0) + count
    for kind, count in totals.items():
        log.warning("format %s cannot hold %s: dropped %d", fmt, kind, count)
    module.write(Dataset(dataset.classes, kept, dataset.splits, dataset.name, dataset.licence), Path(out))
    return totals
