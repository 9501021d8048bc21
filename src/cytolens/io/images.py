"""Image decoding: JPEG, PNG, BMP, TIFF (8- and 16-bit), grayscale, RGBA, EXIF orientation.

Every image comes out as an ``(H, W, 3)`` ``uint8`` RGB array in the orientation a viewer shows,
so that annotation coordinates (which refer to the displayed image) line up with pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cytolens.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

Image.MAX_IMAGE_PIXELS = None  # whole-slide tiles are legitimately large


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
        array = tif.series[0].levels[0].asarray() if tif.series else tif.pages[0].asarray()
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


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as an RGB ``uint8`` array of shape ``(H, W, 3)``.

    Args:
        path: A JPEG, PNG, BMP or TIFF file.

    Returns:
        The pixels, EXIF orientation applied, alpha dropped, grey replicated to three channels,
        16-bit data scaled to 8 bits.

    Raises:
        DataError: If the file is missing or cannot be decoded.

    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image file not found")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            return _read_tiff(path)
        with Image.open(path) as pil:
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
    """All image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
