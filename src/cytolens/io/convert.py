"""Converting a dataset from one annotation format to another."""

from __future__ import annotations

from pathlib import Path

from cytolens.data.annotations import Dataset
from cytolens.io.output_run import OutputRun
from cytolens.io.registry import write_dataset
from cytolens.io.spec import SPEC_SUFFIXES, load_data, load_spec


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
