"""Exceptions raised by cytolens.

Every error meant for a user names the file it concerns and the problem in one line; the CLI
prints ``str(error)`` and exits non-zero without a traceback (unless ``--debug``).
"""

from __future__ import annotations

from pathlib import Path


class CytolensError(Exception):
    """Base class of errors that are reported to the user in one line."""


class DataError(CytolensError):
    """A data file (image, annotation, spec) is missing, unreadable or inconsistent.

    Args:
        path: The file concerned.
        problem: What is wrong with it, as a short phrase.

    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class ModelError(CytolensError):
    """A model name or checkpoint file cannot be used."""
