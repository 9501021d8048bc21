"""Mosaics of microscope fields for the tiling checks (``bccd_detection.py``, ``dense_fields.py``).

Fields of one size are laid row by row in a ``grid`` x ``grid`` mosaic, either edge to edge (where two fields
meet, the half-cells of both make a "seam" that is really another image) or with a ``gutter`` of background
between them (the mosaic then holds exactly the fields' cells, a fair test of tiling). Their cells move along,
and the cells found on a mosaic are compared with those found on its fields run separately, at the seams and
away from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.data.annotations import AnnotatedImage
from cytolens.data.cells import Cells
from cytolens.errors import DataError
from cytolens.metrics.box_matching import match_boxes

SEAM_MARGIN = 4.0
"""A cell is at a seam when its box reaches within this many pixels of a field edge inside the mosaic."""


def places(width: int, height: int, grid: int, gutter: int = 0) -> list[tuple[int, int]]:
    """Top-left corner ``(x, y)`` of each of ``grid`` x ``grid`` fields of ``width`` x ``height``, row by row."""
    return [(column * (width + gutter), row * (height + gutter)) for row in range(grid) for column in range(grid)]


def mosaic_pixels(pixels: list[np.ndarray], grid: int, gutter: int = 0) -> np.ndarray:
    """One RGB image of ``pixels`` (equal fields) laid row by row, ``gutter`` pixels apart.

    The gutter takes the fields' median colour (their background: plasma, in a blood smear).
    """
    height, width = pixels[0].shape[:2]
    background = np.median(np.concatenate([field.reshape(-1, 3) for field in pixels]), axis=0)
    mosaic = np.empty((grid * height + (grid - 1) * gutter, grid * width + (grid - 1) * gutter, 3), np.uint8)
    mosaic[:] = background.astype(np.uint8)
    for field, (x, y) in zip(pixels, places(width, height, grid, gutter), strict=True):
        mosaic[y : y + height, x : x + width] = field
    return mosaic


def moved(cells: Cells, dx: float, dy: float) -> Cells:
    """``cells`` moved right by ``dx`` and down by ``dy`` pixels."""
    offset = np.array([dx, dy], dtype=np.float64)
    boxes = None if cells.boxes is None else cells.boxes + np.tile(offset, 2)
    return replace(cells, centres=cells.centres + offset, boxes=boxes)


def joined(fields: list[AnnotatedImage], path: Path, grid: int, gutter: int = 0) -> AnnotatedImage:
    """One image holding the cells of ``fields`` laid out as :func:`mosaic_pixels` lays their pixels, as ``path``.

    Raises:
        DataError: If a field's size differs from the first's (the mosaic needs equal fields).

    """
    width, height = fields[0].width, fields[0].height
    for field in fields:
        if (field.width, field.height) != (width, height):
            raise DataError(field.path, f"is {field.width}x{field.height}, not {width}x{height} like {fields[0].path}")
    corners = places(width, height, grid, gutter)
    cells = Cells.concatenate([moved(field.cells, dx, dy) for field, (dx, dy) in zip(fields, corners, strict=True)])
    size = (grid * width + (grid - 1) * gutter, grid * height + (grid - 1) * gutter)
    return AnnotatedImage(path, *size, path.stem, cells=cells)


def groups(images: list[AnnotatedImage], grid: int) -> list[list[AnnotatedImage]]:
    """``images`` in name order, ``grid`` x ``grid`` at a time (a remainder too small for a mosaic is left out)."""
    fields = sorted(images, key=lambda image: image.image_id)
    size = grid * grid
    return [fields[start : start + size] for start in range(0, len(fields) - size + 1, size)]


def at_seams(boxes: np.ndarray, width: int, height: int, grid: int, gutter: int = 0) -> np.ndarray:
    """Which ``(N, 4)`` mosaic boxes reach (within :data:`SEAM_MARGIN`) an edge of a field inside the mosaic.

    A cell's centre is then no farther than its own radius (half its box) from the edge: it may be a half-cell.
    """
    near = np.zeros(len(boxes), dtype=bool)
    for low, high, size in ((0, 2, width), (1, 3, height)):
        for line in range(1, grid):
            for edge in {line * size + (line - 1) * gutter, line * (size + gutter)}:
                near |= (boxes[:, low] < edge + SEAM_MARGIN) & (boxes[:, high] > edge - SEAM_MARGIN)
    return near


def compare(
    found: Sequence[Cells], expected: Sequence[Cells], size: tuple[int, int], grid: int, gutter: int, classes: list[str]
) -> dict[str, Any]:
    """Per class, the cells found on mosaics against those found on their fields run separately, at the seams
    (:func:`at_seams`: a field's cell by its box, a mosaic's by the box of the field cell paired with it, else its own)
    and away from them.

    Args:
        found: Cells found on each mosaic.
        expected: Cells found on each mosaic's fields, in mosaic pixels (:func:`joined`).
        size: ``(width, height)`` of one field.
        grid: Fields per mosaic side.
        gutter: Pixels between fields.
        classes: Class names, by label.

    Returns:
        Per class and place (``away``, ``seams``): the counts on the mosaics (``mosaic``) and their fields
        (``fields``), their ``difference``, and the cells left unpaired on each side (``unpaired_mosaic``,
        ``unpaired_fields``) when each mosaic's boxes are paired one to one with its fields' (same class, IoU at
        least 0.5: :func:`~cytolens.metrics.box_matching.match_boxes`).

    """
    keys = ("mosaic", "fields", "difference", "unpaired_mosaic", "unpaired_fields")
    figures = {name: {place: dict.fromkeys(keys, 0) for place in ("away", "seams")} for name in classes}
    for mosaic, fields in zip(found, expected, strict=True):
        pairs = match_boxes(mosaic.boxes, mosaic.labels, mosaic.scores, fields.boxes, fields.labels)
        paired = (np.isin(np.arange(len(mosaic)), pairs[:, 0]), np.isin(np.arange(len(fields)), pairs[:, 1]))
        seams = (at_seams(mosaic.boxes, *size, grid, gutter), at_seams(fields.boxes, *size, grid, gutter))
        seams[0][pairs[:, 0]] = seams[1][pairs[:, 1]]  # a paired cell is where its field's box is
        for label, name in enumerate(classes):
            for place, here in (("away", False), ("seams", True)):
                ours, theirs = ((seam == here) & (cells.labels == label)
                                for seam, cells in zip(seams, (mosaic, fields), strict=True))
                counts = figures[name][place]
                counts["mosaic"] += int(ours.sum())
                counts["fields"] += int(theirs.sum())
                counts["difference"] += int(ours.sum() - theirs.sum())
                counts["unpaired_mosaic"] += int((ours & ~paired[0]).sum())
                counts["unpaired_fields"] += int((theirs & ~paired[1]).sum())
    return figures
