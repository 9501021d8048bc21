"""Per-image errors of a detector: matched, missed and false cells, the worst images, and their pictures.

Boxes are matched per image at IoU 0.5, class-aware and greedy by score
(:func:`~cytolens.metrics.box_matching.match_boxes`), using only the predictions scoring at least the
model's operating threshold: those are the cells a user is shown. Points are matched within the
radius (:func:`~cytolens.metrics.points.match_points`) using every prediction, as
:func:`~cytolens.metrics.points.point_metrics` does, so an image's F1 here equals its ``per_image``
F1 there. An image's error is its F1 ``2 TP / (2 TP + FP + FN)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells, ScoreThreshold
from cytolens.errors import CytolensError
from cytolens.io.images import read_image
from cytolens.metrics.box_matching import match_boxes
from cytolens.metrics.numbers import f1_from_counts
from cytolens.metrics.pairing import align_predictions
from cytolens.metrics.points import match_points
from cytolens.results.overlay import font

IOU_THRESHOLD = 0.5
"""IoU at which a predicted box matches a true box in the gallery."""

OUTCOME_COLORS = {"matched": (0, 158, 115), "missed": (213, 94, 0), "false": (0, 114, 178)}
"""RGB colour of matched cells (true positives), missed cells (false negatives) and false cells (false
positives): Okabe-Ito green, vermilion and blue, told apart with colour-blindness too."""


@dataclass
class ImageOutcome:
    """How the predictions on one image compare with its truth.

    Attributes:
        truth: The true image, holding the cells compared (its boxes, or its points).
        predicted: The predicted image, holding the cells compared (labels in the truth's classes; boxes
            below the score threshold left out).
        kind: ``"boxes"`` or ``"points"``.
        pairs: ``(K, 2)`` matched ``(predicted index, true index)`` pairs.

    """

    truth: AnnotatedImage
    predicted: AnnotatedImage
    kind: str
    pairs: np.ndarray

    @property
    def tp(self) -> int:
        """Matched cells."""
        return len(self.pairs)

    @property
    def fp(self) -> int:
        """False cells: predictions without a match."""
        return len(self.predicted.cells) - self.tp

    @property
    def fn(self) -> int:
        """Missed cells: true cells without a match."""
        return len(self.truth.cells) - self.tp

    @property
    def f1(self) -> float | None:
        """``2 TP / (2 TP + FP + FN)``; ``None`` for an image with nothing true and nothing predicted."""
        value = f1_from_counts(self.tp, self.fp, self.fn)
        return None if np.isnan(value) else value

    def cells(self, outcome: str) -> Cells:
        """The ``"matched"``, ``"missed"`` or ``"false"`` cells.

        Matched and false cells are the predicted ones (at their predicted position), missed cells the true ones.
        """
        if outcome == "matched":
            return self.predicted.cells.select(self.pairs[:, 0])
        if outcome == "false":
            return self.predicted.cells.select(np.setdiff1d(np.arange(self.tp + self.fp), self.pairs[:, 0]))
        return self.truth.cells.select(np.setdiff1d(np.arange(self.tp + self.fn), self.pairs[:, 1]))


def _only(image: AnnotatedImage, kind: str) -> AnnotatedImage:
    """``image`` holding only its cells of ``kind`` (``"boxes"`` or ``"points"``)."""
    return replace(image, cells=image.cells.box_cells() if kind == "boxes" else image.cells.point_cells())


def image_outcomes(
    predictions: Dataset, truth: Dataset, score_threshold: ScoreThreshold | None = None, radius: float | None = None
) -> list[ImageOutcome]:
    """Match predictions with the truth on every image (see the module docstring).

    Args:
        predictions: Predicted boxes or points (images matched by ``image_id``, classes by name).
        truth: The truth; boxes are compared when it holds any, else points.
        score_threshold: Boxes scoring below this (one value or one per class) are left out (``None``: none are).
        radius: Matching radius in pixels for points.

    Returns:
        One outcome per truth image, in order; an empty list when the truth holds neither boxes nor points.

    Raises:
        CytolensError: If the truth holds points (and no boxes) and ``radius`` is ``None``.

    """
    predictions = align_predictions(predictions, truth)
    if any(image.cells.has_box.any() for image in truth):
        kind, predictions = "boxes", predictions.scoring_at_least(score_threshold)
    elif any(len(image.cells) for image in truth):
        kind = "points"
        if radius is None:
            raise CytolensError("the ground truth holds points: a radius (pixels) is needed to match predicted points")
    else:
        return []
    outcomes = []
    for true, predicted in zip(truth.images, predictions.images, strict=True):
        true, predicted = _only(true, kind), _only(predicted, kind)
        if kind == "boxes":
            found, cells = predicted.cells, true.cells
            pairs = match_boxes(found.boxes, found.labels, found.scores, cells.boxes, cells.labels, IOU_THRESHOLD)
        else:
            pairs = match_points(predicted.cells.centres, true.cells.centres, radius)[0]
        outcomes.append(ImageOutcome(true, predicted, kind, pairs))
    return outcomes


def worst_images(outcomes: list[ImageOutcome], count: int) -> list[ImageOutcome]:
    """The ``count`` images with errors and the lowest F1 (more errors first among equal F1)."""
    flawed = [outcome for outcome in outcomes if outcome.fp + outcome.fn]
    return sorted(flawed, key=lambda outcome: (outcome.f1, -(outcome.fp + outcome.fn)))[:count]


def draw_outcome(outcome: ImageOutcome, class_names: list[str], max_size: int = 800) -> np.ndarray:
    """Draw matched, missed and false cells on the image in :data:`OUTCOME_COLORS`.

    Missed and false boxes are labelled with their class. The picture is shrunk to at most
    ``max_size`` pixels on its longer side.

    Returns:
        The picture as an ``(H, W, 3)`` uint8 array.

    """
    canvas = Image.fromarray(read_image(outcome.truth.path)).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    scale = max(1.0, max(canvas.size) / 640)
    width, radius, text_font = max(1, round(2 * scale)), 4 * scale, font(int(11 * scale))
    for name in ("matched", "false", "missed"):  # errors drawn last, on top
        colour = OUTCOME_COLORS[name]
        cells = outcome.cells(name)
        for where, label in zip(cells.boxes if outcome.kind == "boxes" else cells.centres, cells.labels, strict=True):
            if outcome.kind == "boxes":
                draw.rectangle(where.tolist(), outline=colour, width=width)
                if name != "matched":
                    text = class_names[label] if label >= 0 else "?"
                    draw.text((where[0] + 2, where[1] + 1), text, fill=colour, font=text_font)
            else:
                x, y = where
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour, outline=(255, 255, 255))
    canvas.thumbnail((max_size, max_size))
    return np.asarray(canvas)
