"""Reading and writing JSON annotation files as strict JSON, naming the file in every error.

Python's :mod:`json` reads and writes the non-standard constants ``NaN``, ``Infinity`` and
``-Infinity`` and reads ``1e400`` as infinity. Annotation files are read through :func:`read_json`,
which refuses them (every number it returns is finite), and written through :func:`write_json`,
which never writes them (other tools cannot read such a file).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cytolens.errors import DataError
from cytolens.io.atomic import write_text
from cytolens.io.text import read_text


class _NotFiniteError(ValueError):
    """A JSON number that is not finite."""


def _refuse_constant(name: str) -> float:
    raise _NotFiniteError(f"holds {name}, which is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFiniteError(f"holds the number {text[:20]}, too large for a float")
    return value


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """The content of a JSON file (its text read by :func:`~cytolens.io.text.read_text`).

    Args:
        path: The file.
        what: What the file is, for the messages (``"COCO JSON file"``...).

    Raises:
        DataError: If the file cannot be read as text, is not valid JSON, holds ``NaN`` or
            ``Infinity``, a number too large for a float, or is nested too deeply to parse.

    """
    text = read_text(path, what)
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise DataError(path, f"{what} is not valid JSON at {where} ({error.msg})") from None
    except _NotFiniteError as error:
        raise DataError(path, f"{what} {error}") from None
    except ValueError as error:  # an integer of more digits than Python converts
        raise DataError(path, f"{what} holds a number Python cannot read ({error})") from None
    except RecursionError:
        raise DataError(path, f"{what} is nested too deeply to read") from None


def write_json(path: str | Path, content: Any, indent: int | None = None) -> None:
    """Write ``content`` as a strict JSON file, atomically (a newline ends the file).

    Raises:
        DataError: Naming ``path``, if ``content`` holds a number that is not finite (nothing is written).

    """
    try:
        text = json.dumps(content, indent=indent, allow_nan=False)
    except ValueError:
        raise DataError(path, "cannot write NaN or infinity as JSON: a number in the data is not finite") from None
    write_text(path, text + "\n")
