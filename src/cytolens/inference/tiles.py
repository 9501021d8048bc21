"""Overlapping tiles over a large image, each owning a "core" so that the cores partition the image.

A tile is processed with its surrounding overlap as context, but only what falls in its core is kept:
every pixel lies in exactly one core, so nothing found on a tile border is counted twice. Core
boundaries run through the middle of each overlap, so a core is at least ``overlap // 2`` pixels away
from its tile's inner edges. Tiles along an axis are as few as the maximum size allows, of equal size
and evenly spread, so that little is computed twice; they are shrunk to the smallest equal size that
still covers the axis, unless ``shrink=False`` keeps every tile at the full size (a box detector resizes
each tile to its input, so only full tiles reach it at one scale).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise


@dataclass(frozen=True)
class Span:
    """A tile's extent along one axis, ``[start, stop)``, and its core ``[core_start, core_stop)``."""

    start: int
    stop: int
    core_start: int
    core_stop: int


def spans(length: int, tile: int, overlap: int, multiple: int = 1, shrink: bool = True) -> list[Span]:
    """Tiles of at most ``tile`` pixels covering ``[0, length)``, consecutive tiles sharing at least ``overlap``.

    Args:
        length: Size of the axis.
        tile: Largest tile size.
        overlap: Smallest overlap of consecutive tiles.
        multiple: Round tile sizes up to a multiple of this (when that stays within ``tile``).
        shrink: Make the tiles as small as their number allows; ``False``: every tile is ``tile`` long
            (an axis no longer than ``tile`` is still one tile of its own length).

    Raises:
        ValueError: If ``overlap`` is negative or not smaller than ``tile``.

    """
    if not 0 <= overlap < tile:
        raise ValueError(f"need 0 <= overlap < tile, got overlap {overlap} and tile {tile}")
    if length <= tile:
        return [Span(0, length, 0, length)]
    count = math.ceil((length - overlap) / (tile - overlap))
    size = math.ceil((length + (count - 1) * overlap) / count)
    size = min(tile, -(-size // multiple) * multiple) if shrink else tile
    starts = [i * (length - size) // (count - 1) for i in range(count)]
    bounds = [0, *((previous + size + start) // 2 for previous, start in pairwise(starts)), length]
    return [Span(start, start + size, bounds[i], bounds[i + 1]) for i, start in enumerate(starts)]


def tiles(
    height: int, width: int, tile: int | tuple[int, int], overlap: int, multiple: int = 1, shrink: bool = True
) -> Iterator[tuple[Span, Span]]:
    """``(row span, column span)`` of every tile of a ``height`` x ``width`` image, row by row (see :func:`spans`).

    Args:
        height: Image height.
        width: Image width.
        tile: Largest tile side, or ``(rows, columns)`` for tiles that are not square.
        overlap: Smallest overlap of neighbouring tiles.
        multiple: Round tile sizes up to a multiple of this (when that stays within the tile).
        shrink: See :func:`spans`.

    """
    tile_rows, tile_cols = (tile, tile) if isinstance(tile, int) else tile
    columns = spans(width, tile_cols, overlap, multiple, shrink)
    for rows in spans(height, tile_rows, overlap, multiple, shrink):
        for cols in columns:
            yield rows, cols
