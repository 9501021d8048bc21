"""Converting a dataset from one annotation format to another, and writing one with its images."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cytolens.data.annotations import Dataset
from cytolens.errors import DataError
from cytolens.io.output_run import OutputRun
from cytolens.io.paths import link_or_copy
from cytolens.io.registry import write_dataset
from cytolens.io.spec import SPEC_SUFFIXES, load_data, load_spec

IMAGE_FOLDERS = {"coco": "images", "points": "images", "voc": "JPEGImages"}
"""Where :func:`export_dataset` places the images of a format, inside its output (YOLO's writer places its own)."""


def _inputs(src: Path, fmt: str | None, dataset: Dataset) -> list[Path]:
    """What a conversion reads: the source, a spec's dataset root, and the images."""
    roots = [load_spec(src).root] if fmt is None and src.suffix.lower() in SPEC_SUFFIXES else []
    return [src, *roots, *(image.path for image in dataset.images)]


def convert(
    src: str | Path, fmt: str | None, to: str, out: str | Path, split: str | None = None, exist_ok: bool = False
) -> dict[str, int]:
    """Read ``src`` and write it to ``out`` in format ``to``, whole or not at all.

    The conversion is written beside ``out`` and moved into place when complete (see
    :class:`~cytolens.io.output_run.OutputRun`), so a failure leaves ``out`` as it was.

    Args:
        src: A dataset spec, or a dataset folder or file in format ``fmt``.
        fmt: The format of ``src``; ``None`` for a spec.
        to: The target format name.
        out: Where to write (a folder, or a file for single-file formats); new or empty unless ``exist_ok``.
            It may not be, or lie inside, the source (or a spec's dataset root), nor hold the source or an image.
        split: Convert only this split.
        exist_ok: Replace an existing ``out`` whole.

    Returns:
        What the target format could not hold and was dropped, as counts by kind (empty if nothing).

    Raises:
        CytolensError: If a format is unknown or cannot be read or written, or the split is not defined.
        DataError: If an input file is missing or malformed, or ``out`` is refused.

    """
    src = Path(src)
    dataset = load_data(src, fmt, split)
    with OutputRun(out, exist_ok=exist_ok, reads=_inputs(src, fmt, dataset)) as run:
        return write_dataset(dataset, run.path, to)


def export_dataset(dataset: Dataset, to: str, out: str | Path, exist_ok: bool = False) -> dict[str, int]:
    """Write ``dataset`` to ``out`` in format ``to`` with its images inside ``out``, whole or not at all.

    The result reads back as it is, wherever it is moved: each image is placed (a hard link when the file
    system allows one, else a copy: :func:`~cytolens.io.paths.link_or_copy`) as ``<folder>/<image_id><suffix>``
    in the folder of :data:`IMAGE_FOLDERS` (``JPEGImages`` for VOC, ``images`` beside a COCO JSON or points
    CSV); the YOLO writer places them itself. Written through :class:`~cytolens.io.output_run.OutputRun`.

    Args:
        dataset: The dataset; its image ids must be file names (no folders).
        to: The format to write.
        out: The output folder; new or empty unless ``exist_ok``.
        exist_ok: Replace an existing ``out`` whole.

    Returns:
        What the format could not hold and was dropped, as counts by kind (see :func:`write_dataset`).

    Raises:
        CytolensError: If the format cannot be written.
        DataError: If an image is missing, an image id is not a file name, or ``out`` is refused.

    """
    folder = IMAGE_FOLDERS.get(to)
    with OutputRun(out, exist_ok=exist_ok, reads=[image.path for image in dataset.images]) as run:
        if folder is not None:
            placed = []
            for image in dataset.images:
                if Path(image.image_id).name != image.image_id or image.image_id in ("", ".", ".."):
                    raise DataError(image.path, f"image id {image.image_id!r} is not a file name")
                target = run.path / folder / f"{image.image_id}{image.path.suffix}"
                link_or_copy(image.path, target)
                placed.append(replace(image, path=target))
            dataset = replace(dataset, images=placed)
        return write_dataset(dataset, run.path, to)
