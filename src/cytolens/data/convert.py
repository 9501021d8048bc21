"""Converting a dataset from one annotation format to another."""

from __future__ import annotations

from pathlib import Path

from cytolens.data.spec import load_data
from cytolens.io.registry import write_dataset


def convert(src: str | Path, fmt: str | None, to: str, out: str | Path, split: str | None = None) -> dict[str, int]:
    """Read ``src`` and write it to ``out`` in format ``to``.

    Args:
        src: A dataset spec, or a dataset folder or file in format ``fmt``.
        fmt: The format of ``src``; ``None`` for a spec.
        to: The target format name.
        out: Where to write (a folder, or a file for single-file formats).
        split: Convert only this split.

    Returns:
        What the target format could not hold and was dropped, as counts by kind (empty if nothing).

    Raises:
        CytolensError: If a format is unknown or cannot be read or written, or the split is not defined.
        DataError: If an input file is missing or malformed.

    """
    return write_dataset(load_data(src, fmt, split), out, to)
