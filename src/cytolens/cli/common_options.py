"""What every verb takes besides its own options: ``--config FILE``, ``--verbose``, ``--quiet``.

:func:`with_common_options` adds them to a verb function. ``--verbose`` and ``--quiet`` are the global
options of the same names, accepted after the verb too (``cytolens predict -q ...`` is ``cytolens -q
predict ...``); ``--debug`` (global only) wins over both, and ``--verbose`` over ``--quiet``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import click
import typer

from cytolens.cli.config import ConfigOption
from cytolens.progress import NOTE

DEBUG = "cytolens.debug"
"""``ctx.meta`` key holding the ``--debug`` flag (``ctx.meta`` is shared by the group and the verb)."""
VERBOSE = "cytolens.verbose"
"""``ctx.meta`` key: ``--verbose`` was given, before or after the verb."""
QUIET = "cytolens.quiet"
"""``ctx.meta`` key: ``--quiet`` was given, before or after the verb."""


def log_level(meta: dict[str, Any]) -> int:
    """The level of the ``cytolens`` loggers for the flags recorded in ``meta`` (``ctx.meta``)."""
    if meta.get(DEBUG):
        return logging.DEBUG
    if meta.get(VERBOSE):
        return logging.INFO
    return logging.ERROR if meta.get(QUIET) else NOTE


def _verbosity_flag(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """Eager callback of a verb's ``--verbose``/``--quiet``: record the flag and apply the level at once."""
    if value:
        ctx.meta[VERBOSE if param.name == "verbose" else QUIET] = True
        logging.getLogger("cytolens").setLevel(log_level(ctx.meta))


VerboseOption = Annotated[
    bool,
    typer.Option(
        "--verbose", "-v", help="Also show progress messages.", is_eager=True, expose_value=False,
        callback=_verbosity_flag,
    ),
]
QuietOption = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="Show errors only, no warnings.", is_eager=True, expose_value=False,
        callback=_verbosity_flag,
    ),
]


def _refuse_non_finite(values: dict[str, Any]) -> None:
    """Refuse ``nan`` and ``inf`` for every number option of every verb (click's ranges let ``nan`` through).

    Raises:
        typer.BadParameter: Naming the first option whose value is not a finite number (exit code 2).

    """
    for name, value in values.items():
        numbers = value if isinstance(value, list | tuple) else [value]
        for number in numbers:
            if isinstance(number, float) and not math.isfinite(number):
                raise typer.BadParameter(f"{number} is not a finite number", param_hint=f"--{name.replace('_', '-')}")


def with_common_options(verb: Callable[..., Any]) -> Callable[..., Any]:
    """The verb function with ``--config``, ``--verbose`` and ``--quiet`` added to the parameters Typer sees.

    The verb itself never receives them (the wrapper drops them): their eager callbacks have already
    turned the config file into the defaults of the other options and set the log level.
    """

    @functools.wraps(verb)
    def command(config: Path | None = None, verbose: bool = False, quiet: bool = False, **kwargs: Any) -> Any:
        _refuse_non_finite(kwargs)
        return verb(**kwargs)

    signature = inspect.signature(verb, eval_str=True)
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, default, annotation in (
            ("config", None, ConfigOption),
            ("verbose", False, VerboseOption),
            ("quiet", False, QuietOption),
        )
    ]
    command.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *added])
    return command
