"""Reading text and YAML files: one decoder, so that every reader names the file when its bytes are wrong.

Every text file cytolens reads (annotation files, split lists, label files, specs, recipes, config
files) goes through :func:`read_text` or :func:`read_yaml`. A file that is missing, is a folder, cannot
be read, is not UTF-8 or holds a NUL byte is reported as a :class:`~cytolens.errors.DataError` naming
the file, instead of a bare ``'utf-8' codec can't decode ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cytolens.errors import DataError


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of a UTF-8 file (a leading byte-order mark is dropped).

    Args:
        path: The file.
        what: What the file is, for the messages (``"split list"``, ``"recipe"``...).

    Raises:
        DataError: If the file is missing, a folder, unreadable, not UTF-8, or holds a NUL byte.

    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise DataError(path, f"{what} is a folder, not a file") from None
    except FileNotFoundError:
        raise DataError(path, f"{what} not found") from None
    except OSError as error:
        raise DataError(path, f"cannot read {what} ({error.strerror or error.__class__.__name__})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(path, f"{what} is not UTF-8 text (byte {error.start}, line {line})") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise DataError(path, f"{what} holds a NUL byte (line {line}): not a text file")
    return text


def read_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """The content of a YAML file, read safely (plain types only: no tags that build objects).

    Raises:
        DataError: If the file cannot be read as text (see :func:`read_text`) or is not valid YAML.

    """
    text = read_text(path, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or error.__class__.__name__
        raise DataError(path, f"{what} is not valid YAML{where} ({problem})") from None
