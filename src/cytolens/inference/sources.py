"""Turning the paths a user gives (files, folders, globs) into a list of image files."""

from __future__ import annotations

import glob
from pathlib import Path

from cytolens.errors import DataError
from cytolens.io.images import IMAGE_SUFFIXES


def _is_image(path: Path) -> bool:
    """An image file by its name; a broken symbolic link counts too, so that predicting reports it, not skips it."""
    return path.suffix.lower() in IMAGE_SUFFIXES and (path.is_file() or path.is_symlink())


def expand_inputs(inputs: list[str | Path], recursive: bool = False) -> list[Path]:
    """Image files named by ``inputs``: files as given, folders' images (sorted), glob patterns expanded.

    Raises:
        DataError: If an input matches nothing.

    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found.extend(sorted(p for p in path.glob(pattern) if _is_image(p)))
        elif path.is_file():
            found.append(path)
        elif any(char in str(item) for char in "*?["):
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True))
            images = [p for p in matches if _is_image(p)]
            if not images:
                raise DataError(item, "the pattern matches no image files")
            found.extend(images)
        else:
            raise DataError(path, "no such file or folder")
    if not found:
        raise DataError(", ".join(map(str, inputs)), "no image files found")
    unique = list(dict.fromkeys(found))
    return unique
