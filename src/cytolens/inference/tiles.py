"""Overlapping tiles over a large image, each owning a "core" so that the cores partition the image.

A tile is processed with its surrounding overlap as context, but only what falls in its core is kept:
every pixel lies in exactly one core, so nothing found on a tile border is counted twice. Core
boundaries run through the middle of each overlap, so a core is at least ``overlap // 2`` pixels away
from its tile's inner edges.
"""

from __future__ import annotations

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


def spans(length: int, tile: int, overlap: int) -> list[Span]:
    """Tiles of at most ``tile`` pixels covering ``[0, length)``, consecutive tiles sharing at least ``overlap``.

    Raises:
        ValueError: If ``overlap`` is negative or not smaller than ``tile``.

    """
    if not 0 <= overlap < tile:
        raise ValueError(f"need 0 <= overlap < tile, got overlap {overlap} and tile {tile}")
    if length <= tile:
        return [Span(0, length, 0, length)]
    starts = [*range(0, length - tile, tile - overlap), length - tile]
    bounds = [0, *((previous + tile + start) // 2 for previous, start in pairwise(starts)), length]
    return [Span(start, start + tile, bounds[i], bounds[i + 1]) for i, start in enumerate(starts)]


def tiles(height: int, width: int, tile: int, overlap: int) -> Iterator[tuple[Span, Span]]:
    """``(row span, column span)`` of every tile of a ``height`` x ``width`` image, row by row."""
    columns = spans(width, tile, overlap)
    for rows in spans(height, tile, overlap):
        for cols in columns:
            yield rows, cols
