"""Progress bars for anything over a second, and notes, on stderr so that stdout stays clean for ``--json``."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import track

T = TypeVar("T")

NOTE = logging.WARNING - 5
"""Log level of a note a user should read once without ``--verbose`` (the scale a model assumes, say): shown by
default as ``note: ...``, hidden by ``--quiet``; not a warning, since nothing is wrong."""
logging.addLevelName(NOTE, "NOTE")


def progress(items: Iterable[T], total: int, description: str, enabled: bool = True) -> Iterator[T]:
    """Iterate over ``items`` showing a Rich progress bar on stderr (hidden when disabled or for one item)."""
    yield from track(
        items, total=total, description=description, disable=not enabled or total < 2, console=Console(stderr=True)
    )
