"""Image decoding: JPEG, PNG, BMP, TIFF (8- and 16-bit), grayscale, RGBA, EXIF orientation.

Every image comes out as an ``(H, W, 3)`` ``uint8`` RGB array in the orientation a viewer shows,
so that annotation coordinates (which refer to the displayed image) line up with pixels.

An image larger than the pixel limit (width x height; :data:`DEFAULT_MAX_PIXELS` unless
:func:`set_max_pixels` or ``cytolens --max-pixels`` changes it) is refused from its header, before
anything is decoded: a small file can declare a huge image (a 100 KB PNG of 30,000 x 30,000 pixels
decodes to 2.7 GB of RGB, about 10 GB at the peak).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cytolens.errors import DataError
from cytolens.io.validation import check_number

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

DEFAULT_MAX_PIXELS = 100_000_000
"""The default pixel limit: 100 megapixels (about 300 MB as RGB), e.g. a 10,000 x 10,000 mosaic."""

Image.MAX_IMAGE_PIXELS = None  # PIL's guard only warns below twice its limit: check_pixels applies ours instead

_max_pixels = DEFAULT_MAX_PIXELS


def set_max_pixels(limit: int) -> None:
    """Set the pixel limit: the largest image (width x height) that :func:`read_image` decodes.

    Args:
        limit: Pixels; ``0`` removes the limit.

    Raises:
        CytolensError: If ``limit`` is not a whole number of at least 0.

    """
    global _max_pixels
    _max_pixels = check_number(limit, "the pixel limit", low=0, integer=True)


def max_pixels() -> int:
    """The pixel limit in force (``0``: none); see :func:`set_max_pixels`."""
    return _max_pixels


def check_pixels(path: str | Path, width: int, height: int) -> None:
    """Refuse an image of ``width`` x ``height`` pixels (read from its header) larger than the pixel limit.

    Raises:
        DataError: Naming the file, its size and how to raise the limit.

    """
    if _max_pixels and width * height > _max_pixels:
        raise DataError(
            path,
            f"{width}x{height} image ({width * height:,} pixels) exceeds the pixel limit of {_max_pixels:,}; "
            "raise it with cytolens --max-pixels N (0: no limit)",
        )


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale integer or float data to 8 bits.

    16-bit data whose maximum fits in 12 bits (common for microscope cameras) is scaled from 0-4095,
    other 16-bit data from 0-65535; floats are taken as 0-1 when their maximum is at most 1.
    """
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.integer):
        top = 4095.0 if array.max(initial=0) <= 4095 and array.dtype.itemsize == 2 else float(np.iinfo(array.dtype).max)
        if array.dtype.itemsize == 1:
            top = 255.0
        return np.clip(np.round(array.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    top = 1.0 if float(np.nanmax(array, initial=0.0)) <= 1.0 else 255.0
    return np.clip(np.round(np.nan_to_num(array) * (255.0 / top)), 0, 255).astype(np.uint8)


def _to_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # channels-first TIFF
    channels = array.shape[2]
    if channels == 1:
        return np.repeat(array, 3, axis=2)
    if channels == 2:  # grey + alpha
        return np.repeat(array[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        source = tif.series[0].levels[0] if tif.series else tif.pages[0]
        header = source.keyframe if tif.series else source
        check_pixels(path, header.imagewidth, header.imagelength)
        array = source.asarray()
        tag = tif.pages[0].tags.get("Orientation")
    while array.ndim > 3:  # stacks: take the first plane
        array = array[0]
    array = _to_rgb(_to_uint8(array))
    method = _ORIENTATION_TRANSPOSE.get(int(tag.value) if tag is not None else 1)
    if method is None:
        return array
    return np.asarray(Image.fromarray(array).transpose(method))


_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""EXIF/TIFF orientation tag to the transpose that displays the image upright (as in PIL's exif_transpose)."""


MICROSCOPE_MPP = (0.01, 20.0)
"""µm/px a microscope image can have; a resolution tag outside it (e.g. a scanner's or editor's 72 dpi,
352.8 µm/px) says nothing about the specimen and is ignored."""
_MICRONS_PER_UNIT = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


def _ome_mpp(xml: str) -> float | None:
    import xml.etree.ElementTree as ET

    for element in ET.fromstring(xml).iter():
        if element.tag.endswith("}Pixels") or element.tag == "Pixels":
            size = element.get("PhysicalSizeX")
            unit = element.get("PhysicalSizeXUnit", "µm")
            if size is not None and unit in _MICRONS_PER_UNIT:
                return float(size) * _MICRONS_PER_UNIT[unit]
    return None


def image_mpp(path: str | Path) -> float | None:
    """The µm/px a TIFF file states: OME ``PhysicalSizeX``, else its X resolution tag in pixels per inch or cm.

    Returns:
        The µm per pixel, or ``None`` when the file states none (any format but TIFF), states it in no
        physical unit, or states one no microscope image has (see :data:`MICROSCOPE_MPP`).

    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            mpp = _ome_mpp(tif.ome_metadata) if tif.is_ome and tif.ome_metadata else None
            tags = tif.pages[0].tags
            resolution, unit = tags.get("XResolution"), tags.get("ResolutionUnit")
            if mpp is None and resolution is not None and unit is not None and int(unit.value) in (2, 3):
                numerator, denominator = resolution.value
                if numerator > 0 and denominator > 0:
                    mpp = (25400.0 if int(unit.value) == 2 else 10000.0) * denominator / numerator
    except Exception:  # noqa: BLE001 - unreadable metadata is no scale; read_image reports unreadable files
        return None
    low, high = MICROSCOPE_MPP
    return mpp if mpp is not None and low <= mpp <= high else None


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as an RGB ``uint8`` array of shape ``(H, W, 3)``.

    Args:
        path: A JPEG, PNG, BMP or TIFF file.

    Returns:
        The pixels, EXIF orientation applied, alpha dropped, grey replicated to three channels,
        16-bit data scaled to 8 bits.

    Raises:
        DataError: If the file is missing, cannot be decoded, or is larger than the pixel limit
            (:func:`check_pixels`).

    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image file not found")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            return _read_tiff(path)
        with Image.open(path) as pil:
            check_pixels(path, *pil.size)
            pil = ImageOps.exif_transpose(pil)
            if pil.mode in ("I;16", "I;16B", "I;16L", "I"):
                return _to_rgb(_to_uint8(np.asarray(pil)))
            if pil.mode in ("RGBA", "LA", "P", "PA"):
                pil = pil.convert("RGBA").convert("RGB") if pil.mode != "LA" else pil.convert("L")
            if pil.mode not in ("RGB", "L"):
                pil = pil.convert("RGB")
            return _to_rgb(np.array(pil))
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise DataError(path, f"cannot decode image ({error.__class__.__name__}: {error})") from None
    except Exception as error:  # tifffile raises assorted types on corrupt files
        raise DataError(path, f"cannot decode image ({error.__class__.__name__}: {error})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """Return ``(width, height)`` of an image as displayed (EXIF orientation applied), reading only its header.

    Raises:
        DataError: If the file is missing or is not an image.

    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image file not found")
    try:
        with Image.open(path) as pil:
            width, height = pil.size
            orientation = pil.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(path, f"cannot decode image ({error.__class__.__name__})") from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def list_images(folder: str | Path) -> list[Path]:
    """All image files directly inside ``folder``, sorted by name.

    Raises:
        DataError: If an image name is a symbolic link to nothing (it would otherwise vanish silently).

    """
    found = []
    for path in Path(folder).iterdir():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.is_symlink() and not path.exists():
            raise DataError(path, f"image file not found (broken symbolic link to {os.readlink(path)})")
        if path.is_file():
            found.append(path)
    return sorted(found)
