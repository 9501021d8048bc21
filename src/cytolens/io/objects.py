"""Gathering boxes and points one object at a time while a reader walks a file (GeoJSON, Label Studio)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cytolens.data.annotations import AnnotatedImage
from cytolens.data.cells import Cells
from cytolens.errors import DataError
from cytolens.io.point_checks import clip_points
from cytolens.io.validation import clean_boxes


def _scores(scores: list[float | None], what: str, source: Path) -> np.ndarray | None:
    """All the scores, or ``None`` when no object has one; a partly scored list is an error."""
    given = sum(score is not None for score in scores)
    if given == 0:
        return None
    if given < len(scores):
        raise DataError(source, f"{given} of {len(scores)} {what} have a score and the others not")
    return np.asarray(scores, dtype=np.float64)


class ObjectList:
    """Boxes and points with labels and optional scores, added one by one.

    Args:
        source: The annotation file being read, named in warnings and errors.

    """

    def __init__(self, source: Path) -> None:
        self.source = source
        self._boxes: list[Sequence[float]] = []
        self._box_labels: list[int] = []
        self._box_scores: list[float | None] = []
        self._points: list[Sequence[float]] = []
        self._point_labels: list[int] = []
        self._point_scores: list[float | None] = []

    def add_box(self, box: Sequence[float], label: int, score: float | None = None) -> None:
        """Add an ``x1, y1, x2, y2`` box."""
        self._boxes.append(box)
        self._box_labels.append(label)
        self._box_scores.append(score)

    def add_point(self, point: Sequence[float], label: int, score: float | None = None) -> None:
        """Add an ``x, y`` point."""
        self._points.append(point)
        self._point_labels.append(label)
        self._point_scores.append(score)

    def to_image(self, path: Path, width: int, height: int, image_id: str = "") -> AnnotatedImage:
        """The annotated image holding the objects, boxes first; boxes and points are clipped to the image, empty
        boxes skipped. Boxes may have scores and points not, or the other way round.

        Raises:
            DataError: If some boxes (or points) have scores and others not.

        """
        clipped, kept = clean_boxes(np.asarray(self._boxes, dtype=np.float64), width, height, self.source)
        boxes = Cells(boxes=clipped, labels=self._box_labels, scores=_scores(self._box_scores, "boxes", self.source))
        points = Cells(
            centres=clip_points(np.asarray(self._points, dtype=np.float64), width, height, self.source),
            labels=self._point_labels, scores=_scores(self._point_scores, "points", self.source),
        )
        cells = Cells.concatenate([boxes.select(kept), points] if len(clipped) else [points])
        return AnnotatedImage(path, width, height, image_id, cells=cells)
