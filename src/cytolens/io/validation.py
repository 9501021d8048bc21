"""Checks shared by everything that reads input: numbers, class names against a class map, boxes against the image.

:func:`check_number` is the one number validator: CLI options, recipes, dataset specs and format
readers pass every number through it where it enters, so that ``nan``, ``inf``, a string or a value out
of range is refused in one line naming the file (or option) instead of flowing on silently.
"""

from __future__ import annotations

import logging
import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.errors import CytolensError, DataError

log = logging.getLogger(__name__)


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
    problem = None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        problem = f"must be a number, not {value!r}"
    elif not math.isfinite(value):
        problem = f"must be a finite number, not {value!r}"
    elif integer and value != int(value):
        problem = f"must be a whole number, not {value!r}"
    else:
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if below or above:
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            bounds = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
            problem = f"must lie in {bounds}, not {value!r}"
    if problem is not None:
        if source is None:
            raise CytolensError(f"{what} {problem}")
        raise DataError(source, f"{what} {problem}")
    return int(value) if integer else float(value)


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

    def index(self, name: str, source: str | Path) -> int:
        """Index of class ``name``, found in file ``source``.

        Raises:
            DataError: If the class map is fixed and does not contain ``name``.

        """
        name = str(name)
        if name not in self._index:
            if self.fixed:
                raise DataError(source, f"class {name!r} is not in the class map ({', '.join(self.names)})")
            self._index[name] = len(self.names)
            self.names.append(name)
        return self._index[name]


def clean_boxes(
    boxes: np.ndarray, labels: np.ndarray, width: int, height: int, source: str | Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clip boxes to the image and drop empty ones, warning about each.

    Args:
        boxes: ``(N, 4)`` xyxy boxes.
        labels: ``(N,)`` labels.
        width: Image width.
        height: Image height.
        source: The annotation file, for the warnings.

    Returns:
        The kept boxes, their labels and the indices kept.

    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    clipped = boxes.copy()
    if width > 0 and height > 0:
        clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, width)
        clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, height)
    moved = np.flatnonzero(np.any(np.abs(clipped - boxes) > 1e-9, axis=1))
    for i in moved:
        log.warning("%s: box %d %s lies outside the %dx%d image: clipped", source, i, boxes[i].tolist(), width, height)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    for i in np.flatnonzero(~keep):
        log.warning("%s: box %d %s has zero or negative size: skipped", source, i, boxes[i].tolist())
    index = np.flatnonzero(keep)
    return clipped[index], np.asarray(labels, dtype=np.int64)[index], index
