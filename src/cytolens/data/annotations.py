"""The canonical representation of annotated images and datasets.

Coordinates are in pixels with the origin at the top-left corner of the top-left pixel, x to the
right and y down. A pixel with integer indices ``(col, row)`` covers ``[col, col + 1) x [row, row + 1)``
and its centre is at ``(col + 0.5, row + 0.5)``. Boxes are ``xyxy`` floats. Readers convert their
format's convention to this one; writers convert back.

An :class:`AnnotatedImage` is an image with its cells (one :class:`~cytolens.data.cells.Cells` record,
boxes and points alike) and its image-level labels and scores; predictions are annotated images whose
cells have scores (:class:`cytolens.results.result.Result`), so metrics and writers take either.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cytolens.data.cells import UNCLASSIFIED, Cells, ScoreThreshold
from cytolens.errors import DataError


def class_index_map(source: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """For each class name of ``source``, its index in ``target`` (:data:`UNCLASSIFIED` if absent)."""
    index = {name: i for i, name in enumerate(target)}
    return np.array([index.get(name, UNCLASSIFIED) for name in source], dtype=np.int64)


@dataclass
class AnnotatedImage:
    """One image and everything annotated (or predicted) on it.

    Attributes:
        path: The image file.
        width: Image width in pixels.
        height: Image height in pixels.
        image_id: A key unique within its dataset (used by split lists); defaults to the file stem.
        mpp: Physical pixel size in micrometres per pixel, if known.
        cells: The cells: centres, boxes, labels, scores (``None`` for ground truth) and more.
        image_labels: Class indices that apply to the whole image (multi-label allowed).
        image_scores: ``(C,)`` float array of per-class image-level scores, or ``None``.

    """

    path: Path
    width: int
    height: int
    image_id: str = ""
    mpp: float | None = None
    cells: Cells = field(default_factory=Cells)
    image_labels: list[int] = field(default_factory=list)
    image_scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.image_id:
            self.image_id = self.path.stem

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return self.width, self.height

    def relabel(self, mapping: np.ndarray, classes: Sequence[str]) -> AnnotatedImage:
        """The image with its labels re-expressed in ``classes``.

        Args:
            mapping: For each class index, its index in ``classes`` (:data:`UNCLASSIFIED`: the class is
                forgotten); several classes may map to one.
            classes: The new class names.

        Returns:
            A copy whose cells are relabelled (:meth:`~cytolens.data.cells.Cells.relabel`), whose image labels
            are mapped (forgotten ones dropped, repeats removed) and whose image scores are per new class
            (the scores of merged classes add up; 0 for a class no old one maps to).

        Raises:
            DataError: If the image scores are not one per class of ``mapping``.

        """
        mapping = np.asarray(mapping, dtype=np.int64)
        scores = None
        if self.image_scores is not None:
            values = np.asarray(self.image_scores, dtype=np.float64).ravel()
            if len(values) != len(mapping):
                raise DataError(self.path, f"{len(values)} image scores for {len(mapping)} classes")
            scores = np.zeros(len(classes))
            kept = mapping >= 0
            np.add.at(scores, mapping[kept], values[kept])
        labels = [int(mapping[label]) for label in self.image_labels if mapping[label] != UNCLASSIFIED]
        return replace(
            self,
            cells=self.cells.relabel(mapping, len(classes)),
            image_labels=list(dict.fromkeys(labels)),
            image_scores=scores,
        )


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
        """Cells per class name; unclassified cells count under ``"unclassified"``."""
        counts: Counter[str] = Counter()
        for image in self.images:
            for label in image.cells.labels:
                counts[self.classes[label] if label >= 0 else "unclassified"] += 1
        return dict(counts)

    def relabel(self, classes: Sequence[str], mapping: np.ndarray | None = None) -> Dataset:
        """The dataset with its labels re-expressed in ``classes`` (see :meth:`AnnotatedImage.relabel`).

        Args:
            classes: The new class names.
            mapping: For each class of this dataset, its index in ``classes`` (:data:`UNCLASSIFIED`: forgotten);
                by default by name (:func:`class_index_map`: classes not in ``classes`` are forgotten).

        """
        mapping = class_index_map(self.classes, classes) if mapping is None else mapping
        images = [image.relabel(mapping, classes) for image in self.images]
        return Dataset(list(classes), images, dict(self.splits), self.name, self.licence)

    def scoring_at_least(self, threshold: ScoreThreshold | None) -> Dataset:
        """The dataset with only the cells scoring at least ``threshold`` (see
        :meth:`~cytolens.data.cells.Cells.scoring_at_least`; ``None`` keeps every cell).
        """
        if threshold is None:
            return self
        images = [replace(image, cells=image.cells.scoring_at_least(threshold, self.classes)) for image in self.images]
        return replace(self, images=images)
