"""The ``--config FILE`` option that every verb takes.

A config file is a YAML mapping whose keys are the verb's option names, with dashes or underscores
(``pred-format`` or ``pred_format``) and without the leading ``--``. Its values become the verb's
defaults (click's ``default_map``), so an option given on the command line overrides the file.
Relative paths in the file are taken from the current directory, as on the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cytolens.errors import DataError
from cytolens.io.text import read_yaml


def _option_names(command: Any) -> dict[str, str]:
    """Config key (underscored option name) to parameter name, for every parameter of ``command``."""
    names = {}
    for param in command.params:
        if param.expose_value:
            keys = [opt[2:] for opt in param.opts if opt.startswith("--")] or [param.name]
            names.update({key.replace("-", "_"): param.name for key in keys})
    return names


def read_config(path: Path, command: Any) -> dict[str, Any]:
    """The defaults that config file ``path`` sets for ``command``, keyed by parameter name.

    Raises:
        DataError: If the file cannot be read, is not a YAML mapping or names an unknown option.

    """
    content = read_yaml(path, "config file")
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise DataError(path, "a config file must be a mapping of option names to values")
    known = _option_names(command)
    defaults = {}
    for key, value in content.items():
        name = known.get(str(key).lstrip("-").replace("-", "_"))
        if name is None:
            options = ", ".join(sorted(option.replace("_", "-") for option in known))
            raise DataError(path, f"unknown option {key!r} for 'cytolens {command.name}' (options: {options})")
        defaults[name] = value
    return defaults


def _load_config(ctx: typer.Context, value: Path | None) -> None:
    """Eager ``--config`` callback: make the file's values the defaults of the verb's other options."""
    if value is not None:
        ctx.default_map = {**(ctx.default_map or {}), **read_config(value, ctx.command)}


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="YAML file of option values (keys = option names); options given on the command line override it.",
        is_eager=True,
        expose_value=False,
        callback=_load_config,
        dir_okay=False,
    ),
]
