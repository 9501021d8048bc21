"""The result of running a model on one image: an annotated image whose cells have scores.

A :class:`Result` is an :class:`~cytolens.data.annotations.AnnotatedImage` (its cells hold boxes for a
box detector, centres alone for a point detector; scores, and probabilities and extras such as
uncertainty when the model gives them) that also knows the model's class names, so metrics and format
writers take it as they are, and it converts to the formats users read: a table (pandas), COCO
results, QuPath GeoJSON and an overlay picture. A patch classifier's result classifies the image whole (a
crop of one cell): no cells, its ``image_scores`` the per-class probabilities and its ``image_labels`` the
types called (:meth:`image_table`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.io.columns import probability_columns


@dataclass
class Result(AnnotatedImage):
    """Cells a model found in one image.

    Attributes:
        classes: The model's class names, which the cells' labels index.
        pixels: The image's ``(H, W, 3)`` uint8 pixels, when the result still carries them (as predicted;
            :meth:`plot` draws on them, so an array input needs no file).

    """

    classes: list[str] = field(kw_only=True)
    pixels: np.ndarray | None = field(default=None, kw_only=True, repr=False, compare=False)

    @property
    def kind(self) -> str:
        """``"boxes"`` (a box detector's cells) or ``"points"``."""
        return "points" if self.cells.boxes is None else "boxes"

    def relabel(self, mapping: np.ndarray, classes: Sequence[str]) -> Result:
        """See :meth:`AnnotatedImage.relabel`; the result then knows ``classes`` as its class names."""
        return replace(super().relabel(mapping, classes), classes=list(classes))

    @property
    def classified_whole(self) -> bool:
        """Whether the image was classified whole (a crop of one cell): image scores and no cells."""
        return self.image_scores is not None and not len(self.cells)

    def counts(self) -> dict[str, int]:
        """Number of cells per class name (every class present, zeros included); an image classified whole is one
        cell of each type called.
        """
        labels = np.asarray(self.image_labels, dtype=np.int64) if self.classified_whole else self.cells.labels
        found = np.bincount(labels[labels >= 0], minlength=len(self.classes))
        return {name: int(count) for name, count in zip(self.classes, found, strict=True)}

    def to_dataframe(self) -> pd.DataFrame:
        """One row per cell: image (its id), x, y (centre), class, score, box corners, probabilities, extras."""
        cells = self.cells
        table = pd.DataFrame(
            {
                "image": self.image_id,
                "x": cells.centres[:, 0],
                "y": cells.centres[:, 1],
                "class": [self.classes[i] if i != UNCLASSIFIED else "" for i in cells.labels],
                "score": cells.scores,
            }
        )
        if cells.boxes is not None:
            for column, values in zip(("x1", "y1", "x2", "y2"), cells.boxes.T, strict=True):
                table[column] = values
        if cells.probabilities is not None:
            for name, values in zip(probability_columns(self.classes), cells.probabilities.T, strict=True):
                table[name] = values
        for name, values in cells.extras.items():
            table[name] = values
        return table

    def image_table(self) -> pd.DataFrame:
        """One row for an image classified whole: image (its id), class (the types called, joined by ``;``) and the
        probability of each class (``p_<class>``); no row otherwise.
        """
        if not self.classified_whole:
            return pd.DataFrame(columns=["image", "class", *probability_columns(self.classes)])
        row = {"image": self.image_id, "class": ";".join(self.classes[index] for index in self.image_labels)}
        row.update(zip(probability_columns(self.classes), map(float, self.image_scores), strict=True))
        return pd.DataFrame([row])

    def to_coco(self, image_id: int = 1) -> list[dict]:
        """COCO results ``{image_id, category_id (class index + 1), bbox [x, y, w, h], score}``, one per box.

        A point model's result has no boxes and gives an empty list.
        """
        from cytolens.io.coco import to_results

        return to_results(Dataset(self.classes, [self]), {self.image_id: image_id})

    def to_geojson(self) -> dict:
        """A QuPath GeoJSON ``FeatureCollection`` of the cells; score, probabilities, extras as measurements."""
        from cytolens.io.geojson import to_feature_collection

        return to_feature_collection(self, self.classes)

    def plot(self, image: np.ndarray | None = None, labels: bool = True) -> np.ndarray:
        """An RGB overlay: class-coloured boxes (or dots) with class and score labels.

        Args:
            image: The pixels to draw on (default: those the result carries, else its image file's).
            labels: Write ``class score`` beside each box.

        """
        from cytolens.results.overlay import draw_result

        return draw_result(self, image if image is not None else self.pixels, labels=labels)
