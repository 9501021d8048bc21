"""Whole-slide images read lazily: only the pixels of the region asked for are decoded.

A pyramidal TIFF or OME-TIFF (levels as SubIFDs or as further pages of its first series), or a plain TIFF too
large to decode whole, is read through tifffile's Zarr store (``tifffile.imread(path, aszarr=True)`` opened with
``zarr.open``): a region decodes only the tiles or strips it touches. Aperio SVS and Hamamatsu NDPI files are read
with tiffslide (the optional ``slides`` extra), imported only when such a file is opened.

The µm/px of a slide is what its file states (OME ``PhysicalSizeX``, the TIFF resolution tags, or the scanner's
``tiffslide.mpp-x``), else the ``mpp`` the caller gives; a given ``mpp`` wins over the file's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cytolens.errors import DataError
from cytolens.io.images import MICROSCOPE_MPP, image_mpp, max_pixels

SCANNER_SUFFIXES = (".svs", ".ndpi")
"""Scanner formats read with tiffslide."""
TIFF_SUFFIXES = (".tif", ".tiff")
PIECE_PIXELS = 1 << 22
"""Pixels of a level read at a time (about, at least one block) when a thumbnail is made from it."""


def _uint8(array: np.ndarray, path: Path) -> np.ndarray:
    """A region's pixels as ``(h, w, 3)`` uint8 RGB: grey repeated, alpha dropped, 16-bit scaled by its range."""
    if array.dtype == np.uint16:
        array = (array // 257).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise DataError(path, f"slide pixels of type {array.dtype} are not supported (8- or 16-bit RGB or grey)")
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


class Slide:
    """A whole-slide image, open for reading regions (use it as a context manager, or call :meth:`close`).

    Attributes:
        path: The file.
        mpp: µm per pixel of level 0 (given, else stated by the file; ``None`` when neither).
        levels: Per pyramid level, ``(height, width, downsample)`` (level 0 first, downsample 1).

    """

    def __init__(self, path: Path, mpp: float | None, levels: Sequence[tuple[int, int, float]], reader: Any) -> None:
        self.path = path
        self.mpp = mpp
        self.levels = list(levels)
        self._reader = reader

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of level 0."""
        return self.levels[0][0], self.levels[0][1]

    def level_mpp(self, level: int) -> float | None:
        """µm per pixel of ``level`` (``None`` when the slide's is unknown)."""
        return None if self.mpp is None else self.mpp * self.levels[level][2]

    def read(self, level: int, y: int, x: int, height: int, width: int) -> np.ndarray:
        """The pixels of a rectangle of ``level`` (in that level's pixels) as ``(height, width, 3)`` RGB uint8.

        Raises:
            DataError: If the rectangle leaves the level, or the file's data cannot be decoded there (truncated).

        """
        level_height, level_width = self.levels[level][:2]
        if not (y >= 0 and x >= 0 and height > 0 and width > 0 and y + height <= level_height
                and x + width <= level_width):
            raise DataError(self.path, f"region {x},{y} {width}x{height} leaves level {level} ({level_width}x"
                            f"{level_height})")
        try:
            return _uint8(self._reader.read(level, y, x, height, width), self.path)
        except DataError:
            raise
        except Exception as error:  # noqa: BLE001 - decoders raise assorted types on truncated or corrupt data
            raise DataError(self.path, f"cannot decode the slide ({error.__class__.__name__}: {error})") from None

    def thumbnail(self, max_side: int) -> np.ndarray:
        """The whole slide at most ``max_side`` pixels a side, area-averaged from the smallest level at least as large.

        The level is read in pieces of about :data:`PIECE_PIXELS` (bands of whole rows, or blocks of a band when
        the level is very wide), each shrunk by a whole factor as it is read: memory holds one piece and the
        shrunk level (under twice ``max_side`` a side), so a slide without a pyramid is never decoded whole, nor
        in strips as wide as it is.
        """
        level = max((i for i, (h, w, _) in enumerate(self.levels) if max(h, w) >= max_side), default=0)
        height, width = self.levels[level][:2]
        step = max(1, max(height, width) // max_side)  # level pixels averaged into one as the pieces are read
        cols = width if step * width <= PIECE_PIXELS else step * max(1, PIECE_PIXELS // step**2)
        rows = step * max(1, PIECE_PIXELS // (step * cols))
        shrunk = np.empty((-(-height // step), -(-width // step), 3), np.uint8)
        for top in range(0, height, rows):
            for left in range(0, width, cols):
                piece = self.read(level, top, left, min(rows, height - top), min(cols, width - left))
                size = (-(-piece.shape[1] // step), -(-piece.shape[0] // step))
                shrunk[top // step : top // step + size[1], left // step : left // step + size[0]] = (
                    piece if step == 1 else cv2.resize(piece, size, interpolation=cv2.INTER_AREA))
        factor = min(1.0, max_side / max(height, width))
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        if size == (shrunk.shape[1], shrunk.shape[0]):
            return shrunk
        return cv2.resize(shrunk, size, interpolation=cv2.INTER_AREA)

    def close(self) -> None:
        """Release the file."""
        self._reader.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _TiffReader:
    """The levels of a TIFF's first series as Zarr arrays (tifffile's store: only touched tiles are decoded)."""

    def __init__(self, path: Path) -> None:
        import tifffile
        import zarr

        self._store = tifffile.imread(path, aszarr=True, series=0)
        opened = zarr.open(self._store, mode="r")
        self.arrays = [opened[key] for key in sorted(opened.keys(), key=int)] if hasattr(opened, "keys") else [opened]

    def read(self, level: int, y: int, x: int, height: int, width: int) -> np.ndarray:
        return np.asarray(self.arrays[level][y : y + height, x : x + width])

    def close(self) -> None:
        self._store.close()


class _ScannerReader:
    """An SVS or NDPI file through tiffslide."""

    def __init__(self, slide: Any) -> None:
        self.slide = slide

    def read(self, level: int, y: int, x: int, height: int, width: int) -> np.ndarray:
        downsample = self.slide.level_downsamples[level]
        location = (round(x * downsample), round(y * downsample))  # tiffslide places regions in level-0 pixels
        return np.asarray(self.slide.read_region(location, level, (width, height), as_array=True))

    def close(self) -> None:
        self.slide.close()


def _levels(shapes: Sequence[tuple[int, int]]) -> list[tuple[int, int, float]]:
    """``(height, width, downsample)`` per level, the downsample measured on the widths."""
    return [(height, width, shapes[0][1] / width) for height, width in shapes]


def _scanner_mpp(properties: dict[str, Any]) -> float | None:
    value = properties.get("tiffslide.mpp-x")
    try:
        mpp = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    low, high = MICROSCOPE_MPP
    return mpp if mpp is not None and math.isfinite(mpp) and low <= mpp <= high else None


def _open_scanner(path: Path) -> tuple[list[tuple[int, int, float]], float | None, _ScannerReader]:
    try:
        import tiffslide
    except ImportError:
        raise DataError(
            path, f"{path.suffix} slides need tiffslide: pip install 'cytolens[slides]' (or pip install tiffslide)"
        ) from None
    slide = tiffslide.TiffSlide(path)
    shapes = [(height, width) for width, height in slide.level_dimensions]
    return _levels(shapes), _scanner_mpp(dict(slide.properties)), _ScannerReader(slide)


def _open_tiff(path: Path) -> tuple[list[tuple[int, int, float]], float | None, _TiffReader]:
    reader = _TiffReader(path)
    shapes = [tuple(array.shape[:2]) for array in reader.arrays]
    if any(not (len(array.shape) == 2 or (len(array.shape) == 3 and array.shape[2] in (1, 3, 4)))
           for array in reader.arrays):
        reader.close()
        raise DataError(path, f"slide of shape {reader.arrays[0].shape} is not a 2-D RGB or grey image")
    return _levels(shapes), image_mpp(path), reader


def open_slide(path: str | Path, mpp: float | None = None) -> Slide:
    """Open a whole-slide image for lazy reading.

    Args:
        path: A pyramidal TIFF or OME-TIFF, a large TIFF, or an SVS or NDPI file (these need tiffslide).
        mpp: µm per pixel of level 0, instead of what the file states (needed when it states none).

    Returns:
        The open :class:`Slide`.

    Raises:
        DataError: Naming the file, if it is missing, not a TIFF-based slide, truncated or corrupt, or needs
            tiffslide and it is not installed.

    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "slide file not found")
    suffix = path.suffix.lower()
    if suffix not in (*TIFF_SUFFIXES, *SCANNER_SUFFIXES):
        raise DataError(path, f"not a slide: {', '.join((*TIFF_SUFFIXES, *SCANNER_SUFFIXES))} files are read")
    try:
        levels, stated, reader = _open_scanner(path) if suffix in SCANNER_SUFFIXES else _open_tiff(path)
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - tifffile and tiffslide raise assorted types on corrupt files
        raise DataError(path, f"cannot read the slide ({error.__class__.__name__}: {error})") from None
    return Slide(path, mpp or stated, levels, reader)


def is_slide(path: str | Path) -> bool:
    """Whether ``path`` is read as a slide: an SVS or NDPI file, or a TIFF larger than the image pixel limit (see
    :func:`~cytolens.io.images.max_pixels`; a small TIFF with a pyramid, as QuPath exports, is an image).
    Unreadable files are not slides.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SCANNER_SUFFIXES:
        return True
    if suffix not in TIFF_SUFFIXES or not path.is_file():
        return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                return False
            sides = dict(zip(tif.series[0].axes, tif.series[0].shape, strict=True))
            return bool(max_pixels() and sides.get("Y", 0) * sides.get("X", 0) > max_pixels())
    except Exception:  # noqa: BLE001 - a file tifffile cannot parse is no slide; read_image reports it
        return False


__all__ = ["SCANNER_SUFFIXES", "Slide", "is_slide", "open_slide"]
