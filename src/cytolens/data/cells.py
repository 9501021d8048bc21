"""The cells of one image: one record for annotations and predictions alike.

A :class:`Cells` record holds, for each cell, its centre ``x, y`` and its class label (an index into the
class names of the dataset or model; :data:`UNCLASSIFIED` when the class is not known), and may hold
its box, its score, its class probabilities and named extras. Every per-cell array has one row per
cell, in the same order; :meth:`Cells.select` keeps them together, so no caller subsets them one by one.

An optional array is ``None`` when no cell has the value, and NaN marks a cell without it among cells
with it (a row of NaN for a box, NaN for a score).

- **Boxes and points in one record.** ``boxes`` is ``None`` when no cell has a box (a record of
  points); otherwise it is ``(N, 4)`` ``xyxy`` with a row of NaN for each cell marked by its centre
  alone. So one record holds what one file holds: a GeoJSON or Label Studio image may hold boxes and
  points, which readers list boxes first. A cell with a box has the box's centre as its centre.
  Whatever deals in one kind takes :meth:`Cells.box_cells` or :meth:`Cells.point_cells`; writers of
  both kinds keep the record's order.
- **Scores.** ``None`` for ground truth, one per cell for predictions; NaN only where a file scores
  one kind and not the other (QuPath detections with a score beside points without). :meth:`Cells.scoring_at_least`
  is the one score filter, with one threshold or one per class name (:data:`ScoreThreshold`).
- **Labels.** :meth:`Cells.relabel` is the one relabelling: labels (and probability columns) mapped
  into another list of classes.
- **Extras.** Further per-cell columns by name, each ``(N,)`` (``uncertainty``, and whatever later
  tasks add); tables and GeoJSON measurements carry them under their names.

Examples:
    >>> cells = Cells(boxes=[[0, 0, 10, 10], [20, 20, 24, 30]], labels=[1, 0], scores=[0.9, 0.3])
    >>> cells.centres.tolist()
    [[5.0, 5.0], [22.0, 25.0]]
    >>> cells.scoring_at_least({"a": 0.5, "b": 0.5}, ["a", "b"]).labels.tolist()
    [1]

"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

UNCLASSIFIED = -1
"""Label of a cell whose class is not known (a point that marks a cell without saying its class)."""

ScoreThreshold = float | Mapping[str, float]
"""A score threshold for every class, or a mapping of class name to threshold (classes not named: 0)."""


def _rows(values: object, shape_tail: tuple[int, ...], dtype: type) -> np.ndarray:
    """``values`` as an array of rows of shape ``shape_tail`` (an empty one for no values)."""
    array = np.asarray(values, dtype=dtype)
    if array.size == 0:
        return np.zeros((0, *shape_tail), dtype=dtype)
    return array.reshape((-1, *shape_tail))


def _box_centres(boxes: np.ndarray) -> np.ndarray:
    """The centres ``x, y`` of ``(N, 4)`` ``xyxy`` boxes, as an ``(N, 2)`` array."""
    boxes = _rows(boxes, (4,), np.float64)
    return np.column_stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2]).reshape(-1, 2)


def _per_cell(threshold: ScoreThreshold, classes: Sequence[str], labels: np.ndarray) -> np.ndarray:
    """The threshold that applies to each cell, by its class (unclassified cells take the lowest).

    Raises:
        ValueError: If the mapping names a class that is not in ``classes``.

    """
    if not isinstance(threshold, Mapping):
        return np.full(len(labels), float(threshold))
    unknown = sorted(set(threshold) - set(classes))
    if unknown:
        raise ValueError(f"score thresholds name unknown classes {unknown} (classes: {', '.join(classes)})")
    per_class = np.array([float(threshold.get(name, 0.0)) for name in classes] + [min(threshold.values(), default=0.0)])
    return per_class[np.where(labels >= 0, labels, len(classes))]


@dataclass(frozen=True, kw_only=True, eq=False)
class Cells:
    """The cells of one image (see the module docstring); every argument is optional.

    Attributes:
        labels: ``(N,)`` int class indices, :data:`UNCLASSIFIED` when unknown.
        centres: ``(N, 2)`` float ``x, y``; when omitted, the centres of ``boxes`` (then every cell needs one).
        boxes: ``(N, 4)`` float ``x1, y1, x2, y2``, NaN rows for cells without a box; ``None`` when no cell has one.
        scores: ``(N,)`` float confidences, or ``None`` for ground truth.
        probabilities: ``(N, C)`` float class probabilities, when a model gives them.
        extras: Further ``(N,)`` per-cell columns by name (e.g. ``uncertainty``).

    Raises:
        ValueError: If the arrays do not all have one row per cell.

    """

    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    centres: np.ndarray | None = None
    boxes: np.ndarray | None = None
    scores: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        labels = _rows(self.labels, (), np.int64)
        boxes = None if self.boxes is None else _rows(self.boxes, (4,), np.float64)
        if self.centres is not None:
            centres = _rows(self.centres, (2,), np.float64)
        else:
            centres = _box_centres(boxes) if boxes is not None else np.zeros((0, 2))
        probabilities = None
        if self.probabilities is not None:
            probabilities = np.asarray(self.probabilities, dtype=np.float64)
            if probabilities.ndim != 2:
                raise ValueError(f"probabilities must be an (N, C) array, not of shape {probabilities.shape}")
        arrays = {
            "centres": centres,
            "boxes": boxes,
            "scores": None if self.scores is None else _rows(self.scores, (), np.float64),
            "probabilities": probabilities,
        }
        extras = {str(name): np.asarray(values).reshape(-1) for name, values in self.extras.items()}
        for what, array in [*arrays.items(), *extras.items()]:
            if array is not None and len(array) != len(labels):
                raise ValueError(f"{len(array)} {what} for {len(labels)} cells (labels)")
        if self.centres is None and boxes is not None and np.isnan(boxes).all(axis=1).any():
            raise ValueError("a cell without a box needs its centre given")
        for name, value in {"labels": labels, **arrays, "extras": extras}.items():
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def concatenate(parts: Sequence[Cells]) -> Cells:
        """The cells of ``parts`` one after another (the boxes of an image, then its points; the cells of tiles).

        An optional array (boxes, scores, probabilities, an extra) is ``None`` when no part has it, else NaN
        stands for it in the cells of the parts without.

        Examples:
            >>> boxes = Cells(boxes=[[0, 0, 4, 4]], labels=[0])
            >>> Cells.concatenate([boxes, Cells(centres=[[9, 9]], labels=[1])]).has_box.tolist()
            [True, False]

        """

        def joined(arrays: list[np.ndarray | None]) -> np.ndarray | None:
            if all(array is None for array in arrays):
                return None
            tail = next(array for array in arrays if array is not None).shape[1:]
            return np.concatenate([
                np.full((len(part), *tail), np.nan) if array is None else array
                for part, array in zip(parts, arrays, strict=True)
            ])

        names = dict.fromkeys(name for part in parts for name in part.extras)
        return Cells(
            labels=np.concatenate([np.zeros(0, np.int64), *(part.labels for part in parts)]),
            centres=np.concatenate([np.zeros((0, 2)), *(part.centres for part in parts)]),
            boxes=joined([part.boxes for part in parts]),
            scores=joined([part.scores for part in parts]),
            probabilities=joined([part.probabilities for part in parts]),
            extras={name: joined([part.extras.get(name) for part in parts]) for name in names},
        )

    @property
    def has_box(self) -> np.ndarray:
        """``(N,)`` bool: which cells have a box."""
        if self.boxes is None:
            return np.zeros(len(self), dtype=bool)
        return ~np.isnan(self.boxes).all(axis=1)

    def select(self, which: np.ndarray | Sequence[int] | Sequence[bool]) -> Cells:
        """The cells chosen by a boolean mask, or by indices (in their order); every per-cell array follows.

        When cells are chosen and none of them has a score (all NaN), ``scores`` is ``None``.

        Examples:
            >>> Cells(centres=[[1, 2], [3, 4], [5, 6]], labels=[0, 1, 0]).select([2, 0]).centres.tolist()
            [[5.0, 6.0], [1.0, 2.0]]

        """
        which = np.asarray(which)
        which = which if which.dtype == bool else which.astype(np.int64)

        def pick(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[which]

        scores = pick(self.scores)
        return Cells(
            labels=self.labels[which],
            centres=self.centres[which],
            boxes=pick(self.boxes),
            scores=None if scores is None or (len(scores) and np.isnan(scores).all()) else scores,
            probabilities=pick(self.probabilities),
            extras={name: values[which] for name, values in self.extras.items()},
        )

    def box_cells(self) -> Cells:
        """The cells that have a box (``boxes`` is then an array, empty when there are none)."""
        chosen = self.select(self.has_box)
        return chosen if chosen.boxes is not None else replace(chosen, boxes=np.zeros((0, 4)))

    def point_cells(self) -> Cells:
        """The cells marked by their centre alone (``boxes`` is then ``None``)."""
        return replace(self.select(~self.has_box), boxes=None)

    def scoring_at_least(self, threshold: ScoreThreshold | None, classes: Sequence[str]) -> Cells:
        """The cells scoring at least ``threshold``: one value, or one per class name (unclassified cells take
        the lowest). Unscored cells (ground truth, or NaN), and every cell when ``threshold`` is ``None``, are kept.

        Args:
            threshold: The threshold.
            classes: The class names the labels index.

        Raises:
            ValueError: If the mapping names a class that is not in ``classes``.

        """
        if threshold is None or self.scores is None:
            return self
        return self.select(np.isnan(self.scores) | (self.scores >= _per_cell(threshold, classes, self.labels)))

    def relabel(self, mapping: np.ndarray, n_classes: int) -> Cells:
        """The cells with their labels mapped into another list of ``n_classes`` classes.

        Args:
            mapping: For each class index, its new index (:data:`UNCLASSIFIED`: the class is forgotten and
                its cells become unclassified). Unclassified cells stay so.
            n_classes: How many classes the new list has.

        Returns:
            The relabelled cells; probability columns move likewise (columns mapped to one class add up,
            those of forgotten classes are dropped).

        """
        mapping = np.asarray(mapping, dtype=np.int64)
        labels = np.full(len(self), UNCLASSIFIED, dtype=np.int64)
        known = self.labels >= 0
        labels[known] = mapping[self.labels[known]]
        probabilities = None
        if self.probabilities is not None:
            kept = mapping >= 0
            probabilities = np.zeros((len(self), n_classes))
            np.add.at(probabilities, (slice(None), mapping[kept]), self.probabilities[:, kept])
        return replace(self, labels=labels, probabilities=probabilities)
