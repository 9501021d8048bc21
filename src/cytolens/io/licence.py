"""The licence a dataset folder states in its ``LICENSE`` file."""

from __future__ import annotations

from pathlib import Path

LICENCE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "LICENCE.txt")


def read_licence(folder: Path) -> str:
    """The first non-empty line of the folder's licence file (e.g. ``"MIT License"``), or ``""`` if none."""
    for name in LICENCE_FILES:
        path = folder / name
        if path.is_file():
            lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
            return next((line for line in lines if line), "")
    return ""
