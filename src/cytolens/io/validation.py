"""Checks shared by everything that reads input: numbers, class names against a class map, boxes against the image.

:func:`check_number` is the one number validator: CLI options, recipes, dataset specs and format
readers pass every number through it where it enters, so that ``nan``, ``inf``, a string or a value out
of range is refused in one line naming the file (or option) instead of flowing on silently. Text
formats hand it :func:`text_number` of a field; :func:`check_finite` applies it to arrays. Every class
name goes through :meth:`ClassNames.index`, which refuses names that are not text, are blank or hold a
control character (a NUL byte must not make a new class).
"""

from __future__ import annotations

import logging
import math
import numbers
import sys
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.errors import CytolensError, DataError

log = logging.getLogger(__name__)


def _finite(value: numbers.Real, integer: bool) -> bool:
    """Whether ``value`` is finite and, unless a whole number is wanted, fits a float (``10**400`` does not)."""
    if isinstance(value, numbers.Integral):
        return integer or abs(value) <= sys.float_info.max
    return math.isfinite(value)


def _shown(value: Any) -> str:
    """``repr(value)`` cut to 40 characters, so that a message stays one short line."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def check_number(
    value: Any,
    what: str,
    source: str | Path | None = None,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> Any:
    """``value`` as a finite number within the given range, or a one-line error.

    Args:
        value: The value read (a ``bool`` is not a number here; a numeric string is not either: YAML,
            JSON and CSV readers have already typed their numbers).
        what: What the number is, named in the message (``"batch_size"``, ``"box 3 x1"``...).
        source: The file the value comes from; ``None`` for a command-line option.
        low: Smallest allowed value (``None``: no bound).
        high: Largest allowed value (``None``: no bound).
        low_open: Exclude ``low`` itself.
        high_open: Exclude ``high`` itself.
        integer: Require a whole number; it is returned as ``int``.

    Returns:
        The number, as ``int`` when ``integer`` else as ``float``.

    Raises:
        DataError: If ``source`` is given and the value is not acceptable.
        CytolensError: Likewise, without a file.

    """
    if isinstance(value, np.generic):
        value = value.item()  # numpy scalars as Python ones, also in the messages
    problem = None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        problem = f"must be a number, not {_shown(value)}"
    elif not _finite(value, integer):
        problem = f"must be a finite number, not {_shown(value)}"
    elif integer and value != int(value):
        problem = f"must be a whole number, not {_shown(value)}"
    else:
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if below or above:
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            bounds = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
            problem = f"must lie in {bounds}, not {_shown(value)}"
    if problem is not None:
        if source is None:
            raise CytolensError(f"{what} {problem}")
        raise DataError(source, f"{what} {problem}")
    return int(value) if integer else float(value)


def text_number(text: str | None) -> int | float | str | None:
    """The number a text field (XML, CSV, a label line) holds, else the field as it is, for :func:`check_number`.

    ``"3"`` gives ``3``, ``"2.5"`` and ``"1e3"`` give floats; ``"nan"`` and ``"inf"`` give the float
    :func:`check_number` refuses as not finite; text that is no number (or ``None``) comes back as it is.
    """
    if text is None:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def check_finite(values: Any, what: str, source: str | Path) -> np.ndarray:
    """``values`` as a float array, or a one-line error naming the first entry that is not a finite number.

    Args:
        values: An array (or nested lists) of numbers.
        what: What each row is, named in the message with the row's number from 1 (``"'detection' row"``).
        source: The file the values come from.

    Raises:
        DataError: If an entry is not a number (a string, a bool...) or is not finite.

    """
    array = np.asarray(values)
    flat = array.reshape(-1)
    bad = np.flatnonzero(~np.isfinite(flat)) if array.dtype.kind in "iuf" else range(flat.size)
    for i in bad:
        row = np.unravel_index(i, array.shape)[0] + 1 if array.ndim else 1
        check_number(flat[i], f"{what} {row}", source)
    return array.astype(np.float64)


def stated_size(values: tuple[Any, Any], names: tuple[str, str], source: str | Path) -> tuple[int, int] | None:
    """The image size an annotation file states, or ``None`` when it states none.

    Args:
        values: The width and height as read (``None`` when absent; a text format passes them
            through :func:`text_number`).
        names: How the messages name them (``"<size><width>"``, ``"image 'a.png': 'width'"``...).
        source: The file.

    Returns:
        ``(width, height)``, or ``None`` when either is absent or 0 (the size is then read from the image).

    Raises:
        DataError: If a value is not a whole number >= 0.

    """
    if None in values:
        return None
    width, height = (check_number(value, name, source, low=0, integer=True)
                     for value, name in zip(values, names, strict=True))
    return (width, height) if width and height else None


def _class_name_problem(name: Any) -> str | None:
    """What makes ``name`` unfit to name a class (not text, blank, a control character), or ``None``."""
    if not isinstance(name, str):
        return f"class name must be text, not {_shown(name)}"
    if not name.strip():
        return f"class name {name!r} is empty"
    control = next((char for char in name if unicodedata.category(char) in ("Cc", "Cs")), None)
    if control is not None:
        return f"class name {_shown(name)} holds a control character (U+{ord(control):04X})"
    return None


class ClassNames:
    """Class names met while reading, in order of first appearance or fixed by a class map.

    Args:
        classes: A fixed, ordered list of names; a name outside it is an error. ``None`` collects
            names as they come.

    """

    def __init__(self, classes: list[str] | None = None) -> None:
        self.fixed = classes is not None
        self.names: list[str] = list(classes or [])
        self._index = {name: i for i, name in enumerate(self.names)}

    def index(self, name: str, source: str | Path, where: str = "") -> int:
        """Index of class ``name``, found in file ``source``.

        Args:
            name: The name as read; it must be text, not blank, without control characters (so that
                a NUL byte or a number cannot make a new class).
            source: The file it was read from.
            where: Where in the file (``"line 3"``, ``"feature 2"``), named in the message.

        Raises:
            DataError: If ``name`` cannot name a class, or the class map is fixed and does not contain it.

        """
        prefix = f"{where}: " if where else ""
        problem = _class_name_problem(name)
        if problem is not None:
            raise DataError(source, prefix + problem)
        if name not in self._index:
            if self.fixed:
                raise DataError(source, f"{prefix}class {name!r} is not in the class map ({', '.join(self.names)})")
            self._index[name] = len(self.names)
            self.names.append(name)
        return self._index[name]


CLIP_TOLERANCE = 1.0
"""Pixels by which a box may stick out of its image and be clipped without a warning (rounding in the
annotation tools: YOLO's normalised coordinates, for one, often end a fraction of a pixel past the edge)."""


def clean_boxes(boxes: np.ndarray, width: int, height: int, source: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Clip boxes to the image and find the empty ones, with one warning line per file for each kind.

    Args:
        boxes: ``(N, 4)`` xyxy boxes.
        width: Image width.
        height: Image height.
        source: The annotation file, for the warnings.

    Returns:
        The ``(N, 4)`` clipped boxes, and the ``(N,)`` mask of those to keep (not empty).

    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    clipped = boxes.copy()
    if width > 0 and height > 0:
        clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, width)
        clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, height)
    outside = np.abs(clipped - boxes).max(axis=1, initial=0.0)
    moved = np.flatnonzero(outside > CLIP_TOLERANCE)
    if len(moved):
        log.warning(
            "%s: %d %s outside the %dx%d image by up to %.1f px (first: box %d %s): clipped",
            source, len(moved), "box lies" if len(moved) == 1 else "boxes lie", width, height,
            outside[moved].max(), moved[0], boxes[moved[0]].tolist(),
        )  # fmt: skip
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    empty = np.flatnonzero(~keep)
    if len(empty):
        log.warning(
            "%s: %d %s zero or negative size: skipped (first: box %d %s)",
            source, len(empty), "box has" if len(empty) == 1 else "boxes have", empty[0], boxes[empty[0]].tolist(),
        )  # fmt: skip
    return clipped, keep
