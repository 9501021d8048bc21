"""The canonical representation of annotated images and datasets.

Coordinates are in pixels with the origin at the top-left corner of the top-left pixel, x to the
right and y down. A pixel with integer indices ``(col, row)`` covers ``[col, col + 1) x [row, row + 1)``
and its centre is at ``(col + 0.5, row + 0.5)``. Boxes are ``xyxy`` floats. Readers convert their
format's convention to this one; writers convert back.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

UNCLASSIFIED = -1
"""Label of a point that marks a cell without saying its class."""


def _as_array(values: object, shape_tail: tuple[int, ...], dtype: type) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.size == 0:
        return np.zeros((0, *shape_tail), dtype=dtype)
    return array.reshape((-1, *shape_tail))


@dataclass
class AnnotatedImage:
    """One image and everything annotated (or predicted) on it.

    Attributes:
        path: The image file.
        width: Image width in pixels.
        height: Image height in pixels.
        image_id: A key unique within its dataset (used by split lists); defaults to the file stem.
        mpp: Physical pixel size in micrometres per pixel, if known.
        boxes: ``(N, 4)`` float array of ``x1, y1, x2, y2``.
        box_labels: ``(N,)`` int array of class indices.
        box_scores: ``(N,)`` float array of confidences, or ``None`` for ground truth.
        points: ``(M, 2)`` float array of ``x, y`` centres.
        point_labels: ``(M,)`` int array of class indices, :data:`UNCLASSIFIED` when unknown.
        point_scores: ``(M,)`` float array of confidences, or ``None`` for ground truth.
        image_labels: Class indices that apply to the whole image (multi-label allowed).
        image_scores: ``(C,)`` float array of per-class image-level scores, or ``None``.

    """

    path: Path
    width: int
    height: int
    image_id: str = ""
    mpp: float | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    box_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    box_scores: np.ndarray | None = None
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    point_scores: np.ndarray | None = None
    image_labels: list[int] = field(default_factory=list)
    image_scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.image_id:
            self.image_id = self.path.stem
        self.boxes = _as_array(self.boxes, (4,), np.float64)
        self.box_labels = _as_array(self.box_labels, (), np.int64)
        self.points = _as_array(self.points, (2,), np.float64)
        self.point_labels = _as_array(self.point_labels, (), np.int64)
        if self.box_scores is not None:
            self.box_scores = _as_array(self.box_scores, (), np.float64)
        if self.point_scores is not None:
            self.point_scores = _as_array(self.point_scores, (), np.float64)
        if len(self.boxes) != len(self.box_labels):
            raise ValueError(f"{self.path}: {len(self.boxes)} boxes but {len(self.box_labels)} labels")
        if len(self.points) != len(self.point_labels):
            raise ValueError(f"{self.path}: {len(self.points)} points but {len(self.point_labels)} labels")

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return self.width, self.height

    @property
    def has_scores(self) -> bool:
        """Whether this holds predictions (objects with scores) rather than ground truth."""
        return self.box_scores is not None or self.point_scores is not None

    def box_centres(self) -> np.ndarray:
        """Centres of the boxes as an ``(N, 2)`` array of ``x, y``."""
        return np.column_stack([(self.boxes[:, 0] + self.boxes[:, 2]) / 2, (self.boxes[:, 1] + self.boxes[:, 3]) / 2])


@dataclass
class Dataset:
    """Annotated images with their ordered class names and named splits.

    Attributes:
        classes: Class names; labels in the images index into this list.
        images: The annotated images.
        splits: Split name to list of ``image_id``; empty when the source defines none.
        name: A short name used in reports and checkpoints.
        licence: The data licence, when the source states it.

    """

    classes: list[str]
    images: list[AnnotatedImage] = field(default_factory=list)
    splits: dict[str, list[str]] = field(default_factory=dict)
    name: str = ""
    licence: str = ""

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self):  # noqa: ANN204 - iterator of AnnotatedImage
        return iter(self.images)

    def subset(self, split: str) -> Dataset:
        """The images of a named split, in the order the split lists them.

        Raises:
            KeyError: If the split is not defined.

        """
        if split not in self.splits:
            known = ", ".join(sorted(self.splits)) or "none"
            raise KeyError(f"split {split!r} is not defined (known: {known})")
        by_id = {image.image_id: image for image in self.images}
        chosen = [by_id[key] for key in self.splits[split] if key in by_id]
        return Dataset(self.classes, chosen, {}, f"{self.name}:{split}", self.licence)

    def object_counts(self) -> dict[str, int]:
        """Objects (boxes and points) per class name; unclassified points count under ``"unclassified"``."""
        counts: Counter[str] = Counter()
        for image in self.images:
            for label in np.concatenate([image.box_labels, image.point_labels]):
                counts[self.classes[label] if label >= 0 else "unclassified"] += 1
        return dict(counts)
