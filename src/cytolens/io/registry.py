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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType

import numpy as np

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.errors import CytolensError, DataError
from cytolens.io.validation import check_finite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Capabilities:
    """What an annotation format can hold."""

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
    dropped: dict[str, int] = {}
    boxes, box_labels, box_scores = image.boxes, image.box_labels, image.box_scores
    points, point_labels, point_scores = image.points, image.point_labels, image.point_scores
    if not caps.boxes and len(boxes):
        dropped["boxes"] = len(boxes)
        boxes, box_labels, box_scores = np.zeros((0, 4)), np.zeros(0, np.int64), None
    if not caps.points and len(points):
        dropped["points"] = len(points)
        points, point_labels, point_scores = np.zeros((0, 2)), np.zeros(0, np.int64), None
    elif not caps.unclassified_points:
        keep = point_labels != UNCLASSIFIED
        if not keep.all():
            dropped["unclassified points"] = int((~keep).sum())
            points, point_labels = points[keep], point_labels[keep]
            point_scores = point_scores[keep] if point_scores is not None else None
    labels = image.image_labels
    if not caps.image_labels and labels:
        dropped["image labels"] = len(labels)
        labels = []
    if not caps.scores:
        n_scores = (len(box_scores) if box_scores is not None else 0) + (
            len(point_scores) if point_scores is not None else 0
        )
        if n_scores:
            dropped["scores"] = n_scores
        box_scores = point_scores = None
    copy = AnnotatedImage(
        image.path,
        image.width,
        image.height,
        image.image_id,
        image.mpp,
        boxes,
        box_labels,
        box_scores,
        points,
        point_labels,
        point_scores,
        labels,
        image.image_scores if caps.scores else None,
    )
    return copy, dropped


def _check_writable(image: AnnotatedImage) -> None:
    """Refuse what no format may write: a coordinate or score that is not finite, an image id leading out of ``out``.

    Raises:
        DataError: Naming the image file.

    """
    for values, what in ((image.boxes, "box"), (image.box_scores, "box score"), (image.points, "point"),
                         (image.point_scores, "point score"), (image.image_scores, "image score")):
        if values is not None:
            check_finite(values, what, image.path)
    key = PurePosixPath(image.image_id)
    if key.is_absolute() or ".." in key.parts or "\\" in image.image_id:
        raise DataError(image.path, f"image id {image.image_id!r} would be written outside the output folder")


def write_dataset(dataset: Dataset, out: str | Path, fmt: str) -> dict[str, int]:
    """Write ``dataset`` to ``out`` in format ``fmt``, warning about anything the format cannot hold.

    Returns:
        Counts of what was dropped, by kind (``boxes``, ``points``, ``unclassified points``,
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
