"""The result of running a model on one image: cells with class, score, probabilities and uncertainty.

A :class:`Result` holds either boxes (box detectors) or points (point detectors); both have a centre
per cell. It converts to the formats users read: a table (pandas), COCO results, QuPath GeoJSON, an
overlay picture, and an :class:`~cytolens.data.annotations.AnnotatedImage` so that metrics and format
writers treat predictions like annotations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.results.thresholds import ScoreThreshold, threshold_per_label


@dataclass
class Result:
    """Cells found in one image.

    Attributes:
        path: The image file.
        width: Image width in pixels.
        height: Image height in pixels.
        classes: The model's class names.
        labels: ``(N,)`` class index per cell.
        scores: ``(N,)`` confidence per cell.
        boxes: ``(N, 4)`` xyxy boxes, or ``None`` for a point model.
        points: ``(N, 2)`` ``x, y`` centres (box centres for a box model).
        probabilities: ``(N, C)`` class probabilities, when the model gives them.
        uncertainty: ``(N,)`` per-cell uncertainty (active learning), when computed.
        image_id: Key of the image (defaults to the file stem).
        mpp: µm/px of the image, when known.

    """

    path: Path
    width: int
    height: int
    classes: list[str]
    labels: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray | None = None
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    probabilities: np.ndarray | None = None
    uncertainty: np.ndarray | None = None
    image_id: str = ""
    mpp: float | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.image_id = self.image_id or self.path.stem
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
            self.points = np.column_stack(
                [(self.boxes[:, 0] + self.boxes[:, 2]) / 2, (self.boxes[:, 1] + self.boxes[:, 3]) / 2]
            ).reshape(-1, 2)
        self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def kind(self) -> str:
        """``"boxes"`` or ``"points"``."""
        return "points" if self.boxes is None else "boxes"

    def filter(self, score_threshold: ScoreThreshold) -> Result:
        """The cells scoring at least ``score_threshold`` (one value, or one per class name)."""
        keep = self.scores >= threshold_per_label(score_threshold, self.classes, self.labels)

        def pick(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[keep]

        return Result(
            self.path,
            self.width,
            self.height,
            self.classes,
            self.labels[keep],
            self.scores[keep],
            pick(self.boxes),
            self.points[keep],
            pick(self.probabilities),
            pick(self.uncertainty),
            self.image_id,
            self.mpp,
        )

    def counts(self) -> dict[str, int]:
        """Number of cells per class name (every class present, zeros included)."""
        found = np.bincount(self.labels[self.labels >= 0], minlength=len(self.classes))
        return {name: int(count) for name, count in zip(self.classes, found, strict=True)}

    def to_annotated(self) -> AnnotatedImage:
        """The predictions as an annotated image with scores (for metrics and format writers)."""
        if self.boxes is not None:
            objects = {"boxes": self.boxes, "box_labels": self.labels, "box_scores": self.scores}
        else:
            objects = {"points": self.points, "point_labels": self.labels, "point_scores": self.scores}
        return AnnotatedImage(self.path, self.width, self.height, self.image_id, self.mpp, **objects)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per cell: image, x, y (centre), class, score, box corners, probabilities, uncertainty."""
        table = pd.DataFrame(
            {
                "image": str(self.path),
                "x": self.points[:, 0],
                "y": self.points[:, 1],
                "class": [self.classes[i] if i != UNCLASSIFIED else "" for i in self.labels],
                "score": self.scores,
            }
        )
        if self.boxes is not None:
            for column, values in zip(("x1", "y1", "x2", "y2"), self.boxes.T, strict=True):
                table[column] = values
        if self.probabilities is not None:
            for index, name in enumerate(self.classes):
                table[f"p_{name}"] = self.probabilities[:, index]
        if self.uncertainty is not None:
            table["uncertainty"] = self.uncertainty
        return table

    def to_coco(self, image_id: int = 1) -> list[dict]:
        """COCO results ``{image_id, category_id (class index + 1), bbox [x, y, w, h], score}``, one per box.

        A point model's result has no boxes and gives an empty list.
        """
        from cytolens.io.coco import to_results

        return to_results(Dataset(self.classes, [self.to_annotated()]), {self.image_id: image_id})

    def to_geojson(self) -> dict:
        """A QuPath GeoJSON ``FeatureCollection`` of the cells; score, probabilities, uncertainty as measurements."""
        from cytolens.io.geojson import to_feature_collection

        extra: dict[str, list[float]] = {}
        if self.probabilities is not None:
            for index, name in enumerate(self.classes):
                extra[f"p_{name}"] = self.probabilities[:, index].tolist()
        if self.uncertainty is not None:
            extra["uncertainty"] = self.uncertainty.tolist()
        return to_feature_collection(self.to_annotated(), self.classes, extra or None)

    def plot(self, image: np.ndarray | None = None, labels: bool = True) -> np.ndarray:
        """An RGB overlay: class-coloured boxes (or dots) with class and score labels."""
        from cytolens.results.overlay import draw_result

        return draw_result(self, image, labels=labels)
