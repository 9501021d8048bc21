"""Cell masks turned into boxes, the way region proposals are made from segmentations (read only).

Layout: a folder with ``images/`` and ``masks/``; each image ``images/X.<ext>`` has a mask
``masks/X.png`` (or ``.tif``/``.tiff``) of the same size, single channel, ``0`` = background.

- A **binary** mask (one non-zero value) is split into cells by connected components
  (:func:`skimage.measure.label`, 8-connectivity: pixels touching by an edge or a corner join).
- An **instance** mask (several non-zero values) gives one cell per value, whether or not its
  pixels touch.

Convention: a cell's box is the exact pixel-edge box of its pixels: the regionprops bbox
``(min_row, min_col, max_row, max_col)`` (max exclusive) becomes ``x1, y1, x2, y2 =
min_col, min_row, max_col, max_row``. Components smaller than ``min_area`` pixels (default 4) are
noise and are ignored, with one warning giving the count.

Masks carry no class: every box gets class 0, named ``classes[0]`` when a class list is given and
``"cell"`` otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from skimage.measure import label, regionprops

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import DataError
from cytolens.io.images import check_pixels, image_size, list_images
from cytolens.io.registry import Capabilities
from cytolens.io.validation import check_finite

CAPABILITIES = Capabilities(boxes=True)

DEFAULT_CLASS = "cell"
"""Name of the single class when no class list is given."""
MASK_SUFFIXES = (".png", ".tif", ".tiff")
"""Mask file suffixes, in the order they are looked for."""

log = logging.getLogger(__name__)


def _load_mask(path: Path) -> np.ndarray:
    """A mask file as a 2-D integer array; a colour mask must have equal channels; the pixel limit applies."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tiff:
                page = tiff.pages[0]
                check_pixels(path, page.imagewidth, page.imagelength)
                mask = tiff.asarray()
        else:
            from PIL import Image

            with Image.open(path) as pil:
                check_pixels(path, *pil.size)
                mask = np.asarray(pil)
    except DataError:
        raise
    except Exception as error:  # PIL and tifffile raise assorted types on corrupt files
        raise DataError(path, f"cannot decode mask ({error.__class__.__name__}: {error})") from None
    mask = np.squeeze(mask)
    if mask.ndim == 3:
        if not (mask == mask[..., :1]).all():
            raise DataError(path, f"mask has {mask.shape[-1]} different channels; expected a single-channel mask")
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise DataError(path, f"mask has shape {mask.shape}; expected a 2-D mask")
    if mask.dtype.kind not in "biuf":
        raise DataError(path, f"mask holds {mask.dtype} values; expected integer labels")
    if mask.dtype.kind == "f":
        check_finite(mask, "mask row", path)
    if mask.dtype.kind == "f" and not np.array_equal(mask, np.round(mask)):
        raise DataError(path, f"mask holds fractional {mask.dtype} values; expected integer labels")
    if mask.min(initial=0) < 0:
        raise DataError(path, "mask holds negative values; expected 0 for background and positive labels")
    return mask.astype(np.int64)


def mask_boxes(mask: np.ndarray, min_area: int = 4) -> tuple[np.ndarray, int]:
    """Boxes of the cells in a mask.

    Args:
        mask: A 2-D integer mask, 0 = background; binary (one non-zero value) or instance labels.
        min_area: Cells with fewer pixels are ignored.

    Returns:
        The ``(N, 4)`` xyxy boxes, ordered by label value (binary masks: in raster order of each
        component's first pixel), and the number of cells ignored as too small.

    """
    values = np.unique(mask[mask != 0])
    labelled = label(mask != 0, connectivity=2) if len(values) == 1 else mask
    regions = regionprops(labelled)
    kept = [region.bbox for region in regions if region.area >= min_area]
    boxes = np.array([(c0, r0, c1, r1) for r0, c0, r1, c1 in kept], dtype=np.float64).reshape(-1, 4)
    return boxes, len(regions) - len(kept)


def _mask_of(image: Path, masks: Path) -> Path:
    for suffix in MASK_SUFFIXES:
        candidate = masks / f"{image.stem}{suffix}"
        if candidate.is_file():
            return candidate
    raise DataError(image, f"no mask {image.stem}{{{','.join(MASK_SUFFIXES)}}} in {masks}")


def read(path: Path, classes: list[str] | None = None, min_area: int = 4) -> Dataset:
    """Read a folder holding ``images/`` and ``masks/``.

    Args:
        path: The folder.
        classes: Class names; the boxes get the first one (default ``["cell"]``).
        min_area: Connected components (or instances) with fewer pixels are ignored.

    Raises:
        DataError: If a folder or mask is missing, a mask cannot be decoded or its size differs from its image's.

    """
    folder, masks = path / "images", path / "masks"
    for needed in (folder, masks):
        if not needed.is_dir():
            raise DataError(path, f"not a mask dataset folder (no {needed.name}/ inside)")
    names = list(classes) if classes else [DEFAULT_CLASS]
    image_files = list_images(folder)
    if not image_files:
        raise DataError(folder, "no images")
    images, ignored = [], 0
    for image_file in image_files:
        mask_file = _mask_of(image_file, masks)
        mask = _load_mask(mask_file)
        width, height = image_size(image_file)
        if mask.shape != (height, width):
            raise DataError(mask_file, f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {width}x{height}")
        boxes, small = mask_boxes(mask, min_area)
        ignored += small
        images.append(AnnotatedImage(image_file, width, height, cells=Cells(boxes=boxes, labels=np.zeros(len(boxes)))))
    if ignored:
        log.warning("%s: ignored %d mask components smaller than %d pixels", path, ignored, min_area)
    return Dataset(names, images, {}, path.name)
