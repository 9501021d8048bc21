"""Turning the paths a user gives (files, folders, globs) into image files, each with an image id.

An image's id is its path relative to the input that named it, without the suffix, with ``/``
separators: ``field1`` for ``slides/field1.jpg`` given as a file or found in the folder ``slides``,
``slideA/field1`` for ``slides/slideA/field1.jpg`` found in ``slides`` with ``recursive``, and for a
glob pattern the path below its fixed part (``slides/*/field1.jpg`` gives ``slideA/field1``). So
images of the same name in different sub-folders keep apart, and outputs named by the id keep the
folder layout of the inputs.
"""

from __future__ import annotations

import glob
import logging
from itertools import takewhile
from pathlib import Path, PurePath

from cytolens.errors import DataError
from cytolens.io.images import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

RECURSIVE_HINT = "add -r (--recursive; recursive=True in Python) to read them"
"""How to read the images in sub-folders, named when a folder's are left out."""


def _is_image(path: Path) -> bool:
    """An image file by its name; a broken symbolic link counts too, so that predicting reports it, not skips it."""
    return path.suffix.lower() in IMAGE_SUFFIXES and (path.is_file() or path.is_symlink())


def _image_id(path: Path, root: Path) -> str:
    """The id of image ``path`` found under ``root`` (see the module doc)."""
    return path.relative_to(root).with_suffix("").as_posix()


def _has_images_below(folder: Path) -> bool:
    """Whether a sub-folder of ``folder``, at any depth, holds an image."""
    return any(_is_image(path) for sub in folder.iterdir() if sub.is_dir() for path in sub.rglob("*"))


def _folder_images(folder: Path, recursive: bool) -> dict[Path, str]:
    """The images of ``folder`` (sorted), each with its id; without ``recursive``, says when sub-folders hold more.

    Raises:
        DataError: If, without ``recursive``, the folder holds no images itself but its sub-folders do.

    """
    found = sorted(path for path in folder.glob("**/*" if recursive else "*") if _is_image(path))
    if not recursive and _has_images_below(folder):
        if not found:
            raise DataError(folder, f"holds no images itself, only sub-folders with images: {RECURSIVE_HINT}")
        log.warning("%s: the images in its sub-folders are left out; %s", folder, RECURSIVE_HINT)
    return {path: _image_id(path, folder) for path in found}


def _pattern_root(pattern: str) -> Path:
    """The fixed folder a glob pattern starts from: its leading parts without wildcards."""
    parts = PurePath(pattern).parts[:-1]
    return Path(*takewhile(lambda part: not any(char in part for char in "*?["), parts))


def find_images(inputs: list[str | Path], recursive: bool = False) -> dict[Path, str]:
    """The image files named by ``inputs``, each with its image id (see the module doc), in input order.

    Files are taken as given, folders' images sorted (with ``recursive``, those of their sub-folders too),
    glob patterns expanded (``**`` matches any depth). A file named twice is listed once.

    Raises:
        DataError: If an input matches nothing, or a folder holds images only in sub-folders and
            ``recursive`` is not set.

    """
    found: dict[Path, str] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = _folder_images(path, recursive)
        elif path.is_file():
            images = {path: path.stem}
        elif any(char in str(item) for char in "*?["):
            root = _pattern_root(str(item))
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True))
            images = {match: _image_id(match, root) for match in matches if _is_image(match)}
            if not images:
                raise DataError(item, "the pattern matches no image files")
        else:
            raise DataError(path, "no such file or folder")
        for image, image_id in images.items():
            found.setdefault(image, image_id)
    if not found:
        raise DataError(", ".join(map(str, inputs)), "no image files found")
    return found


def expand_inputs(inputs: list[str | Path], recursive: bool = False) -> list[Path]:
    """The image files named by ``inputs``, in input order (see :func:`find_images`).

    Raises:
        DataError: As :func:`find_images`.

    """
    return list(find_images(inputs, recursive))
