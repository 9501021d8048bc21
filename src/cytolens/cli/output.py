"""What the verbs print on stdout: one JSON object (``--json``) or Rich tables for people."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from cytolens.metrics.numbers import json_safe


def json_text(data: Mapping[str, Any]) -> str:
    """``data`` as indented JSON text (NumPy values made plain, NaN as ``null``; see ``metrics.numbers.json_safe``)."""
    return json.dumps(json_safe(data), indent=2, allow_nan=False)


def print_json(data: Mapping[str, Any]) -> None:
    """Print ``data`` as one JSON object on stdout."""
    typer.echo(json_text(data))


def number(value: Any) -> str:
    """A figure as people read it: integers with thousands separators, other numbers to three significant digits."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int | np.integer):
        return f"{value:,}"
    if isinstance(value, float | np.floating):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a Rich table on stdout; numbers are formatted with :func:`number` and right-aligned.

    On a terminal the table fits its width; otherwise it is printed as wide as it needs.
    """
    rows = [list(row) for row in rows]
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        numeric = any(isinstance(row[i], int | float | np.number) for row in rows)
        table.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(number(cell) for cell in row))
    console = Console()
    if not console.is_terminal:  # piped or captured: as wide as the table needs, never truncated
        console.width = console.measure(table, options=console.options.update(max_width=10_000)).maximum
    console.print(table)
