"""Progress bars for anything over a second, on stderr so that stdout stays clean for ``--json``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import track

T = TypeVar("T")


def progress(items: Iterable[T], total: int, description: str, enabled: bool = True) -> Iterator[T]:
    """Iterate over ``items`` showing a Rich progress bar on stderr (hidden when disabled or for one item)."""
    yield from track(
        items, total=total, description=description, disable=not enabled or total < 2, console=Console(stderr=True)
    )
