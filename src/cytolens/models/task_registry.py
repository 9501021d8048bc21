"""What each task registers, looked up by the task's name: its thresholds type, its predictor...

A new task adds classes that register themselves (see ``docs/architecture.md``, "Where a new task plugs in"),
not branches on the task's name; each kind of entry has one :class:`TaskRegistry`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar, cast

from cytolens.errors import ModelError

Entry = TypeVar("Entry")
Registered = TypeVar("Registered")


class TaskRegistry(Generic[Entry]):
    """One entry per task, filled by the decorator :meth:`register`.

    Args:
        what: What an entry is (``thresholds``, ``predictor``), for messages.

    Attributes:
        entries: The entries by task, in the order they registered.

    Examples:
        >>> greetings = TaskRegistry[str]("greeting")
        >>> _ = greetings.register("boxes")("hello")
        >>> greetings["boxes"]
        'hello'

    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.entries: dict[str, Entry] = {}

    def register(self, *tasks: str) -> Callable[[Registered], Registered]:
        """Decorator registering its argument as the entry of ``tasks`` (returned unchanged).

        Raises:
            ValueError: If a task has an entry already.

        """

        def decorate(entry: Registered) -> Registered:
            for task in tasks:
                if task in self.entries:
                    raise ValueError(f"{self.what} of task {task!r} registered twice")
                self.entries[task] = cast(Entry, entry)
            return entry

        return decorate

    def __getitem__(self, task: str) -> Entry:
        """The entry of ``task``.

        Raises:
            ModelError: If no entry is registered for it (the message lists the tasks that have one).

        """
        if task not in self.entries:
            raise ModelError(f"no {self.what} is registered for task {task!r} (known: {', '.join(self.entries)})")
        return self.entries[task]


__all__ = ["TaskRegistry"]
