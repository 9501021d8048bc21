"""The licence a dataset folder states in its ``LICENSE`` file."""

from __future__ import annotations

import logging
from pathlib import Path

from cytolens.errors import DataError
from cytolens.io.text import read_text

log = logging.getLogger(__name__)

LICENCE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "LICENCE.txt")


def read_licence(folder: Path) -> str:
    """The first non-empty line of the folder's licence file (e.g. ``"MIT License"``), or ``""`` if none.

    A licence file that cannot be read as text is reported with a warning and taken as no licence:
    the annotations are still usable.
    """
    for name in LICENCE_FILES:
        path = folder / name
        if path.is_file():
            try:
                lines = [line.strip() for line in read_text(path, "licence file").splitlines()]
            except DataError as error:
                log.warning("%s; taken as no licence", error)
                return ""
            return next((line for line in lines if line), "")
    return ""
