"""The ``cytolens`` command: global options, error reporting, logging, and the list of verbs.

Adding a verb:

1. Write ``cli/<verb>.py`` with one function named after the verb. Its parameters are the verb's
   options, declared with the shared types of :mod:`cytolens.cli.options` where one fits
   (``data: DataOption``, ``split: SplitOption = None``, ``as_json: JsonOption = False``...); its
   docstring is the verb's ``--help`` text. The body calls library functions and prints their result
   through :mod:`cytolens.cli.output`; import heavy libraries (torch) inside the body so that
   ``cytolens --help`` stays fast.
2. Add the function to :data:`VERBS` below.

Every verb then also takes ``--config FILE``, ``--verbose`` and ``--quiet`` (see
:mod:`cytolens.cli.common_options`), its flags are listed without a value placeholder, and its errors are
reported like every other verb's: a :class:`~cytolens.errors.CytolensError`, or an ``OSError``,
``ValueError`` or ``KeyError`` raised by library code, is printed as one line ``error: <message>``
on stderr with exit code 1 (``--debug`` shows the traceback instead); usage errors exit with 2.
Library warnings (``logging``) appear on stderr as one line each, ``warning: <message>``.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from cytolens.cli.common_options import DEBUG, QUIET, VERBOSE, log_level, with_common_options
from cytolens.cli.convert import convert
from cytolens.cli.evaluate import evaluate
from cytolens.cli.examples import examples
from cytolens.cli.export import export
from cytolens.cli.models import models
from cytolens.cli.predict import predict
from cytolens.cli.quantise import quantise
from cytolens.cli.rank import rank
from cytolens.cli.review import review
from cytolens.cli.screen import screen, screen_fit
from cytolens.cli.slide import slide
from cytolens.cli.stats import stats
from cytolens.cli.train import train
from cytolens.errors import CytolensError
from cytolens.io.images import DEFAULT_MAX_PIXELS

VERBS = [
    predict, slide, screen, screen_fit, rank, review, train, evaluate, models, stats, convert, export, quantise,
    examples,
]  # fmt: skip
"""The verb functions, in the order ``cytolens --help`` lists them."""

USER_ERRORS = (CytolensError, OSError, ValueError, KeyError)
"""Exceptions reported in one line without a traceback (``FileNotFoundError``, ``PermissionError`` are ``OSError``)."""

def one_line(error: BaseException) -> str:
    """The message of ``error`` on a single line (a ``KeyError``'s key without its quotes)."""
    text = str(error.args[0]) if isinstance(error, KeyError) and len(error.args) == 1 else str(error)
    return " ".join(text.split()) or type(error).__name__


class _FlagsAsFlags:
    """A command whose help lists a flag (``--json``, ``--help``...) without Typer's ``<bool>`` value placeholder."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""  # Typer's Rich help shows the metavar, when there is one, as the value's type
        return params


class _Verb(_FlagsAsFlags, TyperCommand):
    """A verb of the ``cytolens`` command."""


class _Cytolens(_FlagsAsFlags, TyperGroup):
    """The command group, reporting user errors of any verb as one line."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as error:
            if ctx.meta.get(DEBUG):
                raise
            typer.echo(f"error: {one_line(error)}", err=True)
            raise typer.Exit(1) from None


class _OneLineHandler(RichHandler):
    """A Rich log handler printing ``<level>: <message>`` on one line, never wrapped."""

    def render(self, *, record: logging.LogRecord, traceback: Any, message_renderable: Any) -> Text:
        """The line for ``record``: its level name, lower case and coloured, then the message."""
        style = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "red"}.get(record.levelname, "dim")
        return Text.assemble((f"{record.levelname.lower()}: ", style), message_renderable)


def _limit_pixels(ctx: typer.Context, limit: int) -> None:
    """Apply the pixel limit of images (``--max-pixels``) until the command ends."""
    from cytolens.io.images import max_pixels, set_max_pixels

    previous = max_pixels()
    set_max_pixels(limit)
    ctx.call_on_close(lambda: set_max_pixels(previous))


def _log_to_stderr(ctx: typer.Context, level: int) -> None:
    """Send the ``cytolens`` loggers' records at ``level`` and above to stderr until the command ends."""
    logger = logging.getLogger("cytolens")
    handler = _OneLineHandler(console=Console(stderr=True, soft_wrap=True), show_time=False, show_path=False)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)

    ctx.call_on_close(restore)


app = typer.Typer(
    cls=_Cytolens,
    name="cytolens",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug messages.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also show progress messages.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Show errors only, no warnings.")] = False,
    max_pixels: Annotated[
        int,
        typer.Option(
            "--max-pixels",
            min=0,
            help="Refuse images larger than this many pixels (width x height), checked from the file header "
            "before decoding; 0: no limit.",
        ),
    ] = DEFAULT_MAX_PIXELS,
) -> None:
    """Find, classify and count cells in microscopy images. For research use only; not for diagnosis."""
    ctx.meta.update({DEBUG: debug, VERBOSE: verbose, QUIET: quiet})
    _log_to_stderr(ctx, log_level(ctx.meta))
    _limit_pixels(ctx, max_pixels)


for _verb in VERBS:
    app.command(cls=_Verb)(with_common_options(_verb))


def run() -> None:
    """Entry point of the ``cytolens`` console script."""
    app(prog_name="cytolens")
