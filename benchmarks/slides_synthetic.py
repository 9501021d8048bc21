"""Synthetic whole slides: real microscope fields tiled edge to edge into a pyramidal OME-TIFF of any size.

The slide is written tile by tile (a band of tile rows at a time), so a 20,000-pixel slide never exists whole in
memory. Fields are laid row by row, cycling through the fields given; fields outside the ellipse inscribed in the
slide are left as glass (a light grey), so a tissue mask has glass to skip. Each pyramid level halves the one
before; as field sizes divide by the downsample, a level is exactly the fields downsampled and laid the same way.

Used by ``slide_scale.py`` and ``slide_memory.py``:

    >>> write_synthetic_slide("slide.ome.tif", fields, (10_000, 10_000), mpp=0.075)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import tifffile

GLASS = 236
"""Grey level of the glass outside the ellipse."""
TILE = 256
"""Side of the TIFF tiles."""


def _inside_ellipse(row: int, col: int, rows: int, cols: int) -> bool:
    """Whether field ``(row, col)`` of a ``rows`` x ``cols`` layout has its centre inside the inscribed ellipse."""
    y, x = (row + 0.5) / rows - 0.5, (col + 0.5) / cols - 0.5
    return (x * x + y * y) * 4 <= 1.0


def _tiles(fields: Sequence[np.ndarray], shape: tuple[int, int], glass: bool) -> Iterator[np.ndarray]:
    """The TIFF tiles of a slide of ``shape`` laid with ``fields`` (all of one size), row by row."""
    height, width = shape
    field_h, field_w = fields[0].shape[:2]
    rows, cols = -(-height // field_h), -(-width // field_w)
    for top in range(0, height, TILE):
        band = np.full((TILE, -(-width // TILE) * TILE, 3), GLASS, np.uint8)
        for row in range(top // field_h, min(rows, (top + TILE - 1) // field_h + 1)):
            y0, y1 = max(top, row * field_h), min(top + TILE, (row + 1) * field_h, height)
            for col in range(cols):
                if glass and not _inside_ellipse(row, col, rows, cols):
                    continue
                field = fields[(row * cols + col) % len(fields)]
                x0, x1 = col * field_w, min((col + 1) * field_w, width)
                band[y0 - top : y1 - top, x0:x1] = field[y0 - row * field_h : y1 - row * field_h, : x1 - x0]
        for left in range(0, width, TILE):
            yield band[:, left : left + TILE]


def write_synthetic_slide(
    path: str | Path,
    fields: Sequence[np.ndarray],
    shape: tuple[int, int],
    mpp: float | None,
    levels: int = 4,
    glass: bool = True,
    quality: int = 90,
) -> Path:
    """Write a pyramidal OME-TIFF of ``fields`` (RGB uint8 arrays of one size) tiled to ``shape`` (height, width).

    Args:
        path: The file to write.
        fields: The fields, laid row by row and cycled through.
        shape: Level-0 ``(height, width)``.
        mpp: µm/px of level 0, written as OME ``PhysicalSizeX``/``Y`` (``None``: no scale; a plain tiled TIFF).
        levels: Pyramid levels (SubIFDs), level 0 included; each halves the one before.
        glass: Leave the fields outside the inscribed ellipse as glass.
        quality: JPEG quality of the tiles.

    Returns:
        ``path``.

    """
    path = Path(path)
    metadata = {"axes": "YXS"}
    if mpp is not None:
        metadata.update(PhysicalSizeX=mpp, PhysicalSizeXUnit="µm", PhysicalSizeY=mpp, PhysicalSizeYUnit="µm")
    options = {"tile": (TILE, TILE), "compression": "jpeg", "compressionargs": {"level": quality},
               "photometric": "rgb", "dtype": np.uint8}
    with tifffile.TiffWriter(path, bigtiff=True, ome=mpp is not None) as tif:
        tif.write(_tiles(fields, shape, glass), shape=(*shape, 3), subifds=levels - 1, metadata=metadata, **options)
        for level in range(1, levels):
            down = 2**level
            smaller = [cv2.resize(field, (field.shape[1] // down, field.shape[0] // down),
                                  interpolation=cv2.INTER_AREA) for field in fields]
            level_shape = (shape[0] // down, shape[1] // down)
            tif.write(_tiles(smaller, level_shape, glass), shape=(*level_shape, 3), subfiletype=1, **options)
    return path


__all__ = ["write_synthetic_slide"]
