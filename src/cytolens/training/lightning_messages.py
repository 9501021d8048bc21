"""Lightning's own messages kept off the user's screen: logged at debug level (shown with ``cytolens --debug``).

While :func:`lightning_at_debug` is active, Lightning's log records ("GPU available: False...", "💡 Tip: ...
litlogger", "Loading `train_dataloader`...") and the warnings raised from Lightning's code (configuration hints
such as the logging interval, and the deprecations of the libraries under it, e.g. ``_pytree.py:
isinstance(treespec, LeafSpec) is deprecated``) go to the ``cytolens`` logger at debug level. They concern
how cytolens drives Lightning, not the user's data; so do deprecations from anywhere. Other warnings stay
real warnings, logged as one ``warning:`` line each.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import lightning
from lightning.fabric.utilities.warnings import PossibleUserWarning

log = logging.getLogger(__name__)

LOGGERS = ("lightning.pytorch", "lightning.fabric")
"""Lightning's loggers (their children's records reach them)."""
LIGHTNING_DIR = Path(lightning.__file__).resolve().parent
"""Warnings raised from files under this folder are Lightning's."""
AT_DEBUG = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, PossibleUserWarning)
"""Warnings logged at debug level wherever they come from (deprecations, and Lightning's "possibly not an issue")."""


class _ToDebug(logging.Handler):
    """Hands each record on to :data:`log` at debug level."""

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("%s", record.getMessage())


def _is_lightnings(filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(LIGHTNING_DIR)
    except (OSError, ValueError):
        return False


def _show(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` while Lightning runs: Lightning's and deprecations at debug, others as warnings."""
    if issubclass(category, AT_DEBUG) or _is_lightnings(filename):
        log.debug("%s:%d: %s", filename, lineno, message)
    else:
        log.warning("%s", message)


@contextmanager
def lightning_at_debug() -> Iterator[None]:
    """Within the block, Lightning's log records and warnings are logged at debug level (see the module)."""
    loggers = [logging.getLogger(name) for name in LOGGERS]
    saved = [(logger.handlers, logger.propagate) for logger in loggers]
    handler = _ToDebug()
    for logger in loggers:
        logger.handlers, logger.propagate = [handler], False
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show
            yield
    finally:
        for logger, (handlers, propagate) in zip(loggers, saved, strict=True):
            logger.handlers, logger.propagate = handlers, propagate
