"""Checks shared by the format readers: class names against a class map, boxes against the image."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cytolens.errors import DataError

log = logging.getLogger(__name__)


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
