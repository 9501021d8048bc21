"""Checks of point annotations against their image."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def clip_points(points: np.ndarray, width: int, height: int, source: str | Path) -> np.ndarray:
    """Move points that lie outside the image onto its border, warning once with their count.

    Args:
        points: ``(M, 2)`` array of ``x, y``.
        width: Image width.
        height: Image height.
        source: The annotation file, for the warning.

    Returns:
        The points, clipped to ``[0, width] x [0, height]``.

    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    clipped = np.column_stack([points[:, 0].clip(0, width), points[:, 1].clip(0, height)])
    moved = int(np.any(clipped != points, axis=1).sum())
    if moved:
        log.warning("%s: %d point(s) outside the %dx%d image moved onto its border", source, moved, width, height)
    return clipped
