"""The figures of a patch classifier: its probabilities and calls on labelled patches against their truth.

A :class:`ScoredPatches` record holds what a classifier's evaluation compares: the patches (windows of
annotated images, :class:`~cytolens.data.patches.Patch`, each with the set of types it holds), the
classifier's per-class probabilities for each and the types it called. :func:`patch_metrics` scores them:

- every patch holding one type and a single-label classifier: accuracy, macro figures, per-class
  sensitivity, specificity, F1 and ROC-AUC, and the confusion matrix
  (:func:`~cytolens.metrics.classification.classification_metrics`);
- otherwise (patches of touching cells, or a multi-label classifier): exact-match accuracy, Hamming loss and
  per-type figures (:func:`~cytolens.metrics.classification.multilabel_metrics`);
- with a positive group of classes (say the abnormal types), the yes/no figures of "holds a type of the
  group" (:func:`~cytolens.metrics.classification.group_scores`,
  :func:`~cytolens.metrics.classification.binary_metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cytolens.data.annotations import AnnotatedImage
from cytolens.data.patches import Patch
from cytolens.errors import CytolensError
from cytolens.metrics.classification import binary_metrics, classification_metrics, group_scores, multilabel_metrics


@dataclass(frozen=True)
class ScoredPatches:
    """Labelled patches with a classifier's probabilities and calls.

    Attributes:
        classes: The class names, which patch labels and the columns of ``scores`` and ``calls`` index.
        images: The annotated images the patches were cut from (``Patch.image`` indexes them).
        patches: The patches, each with the set of types it truly holds.
        scores: ``(N, C)`` probabilities per patch and class.
        calls: ``(N, C)`` 0/1, the types the classifier called (its most probable one, or, multi-label,
            those reaching their thresholds).
        multi_label: Whether the probabilities are independent sigmoids (else a softmax over the classes).

    """

    classes: list[str]
    images: list[AnnotatedImage]
    patches: list[Patch]
    scores: np.ndarray
    calls: np.ndarray
    multi_label: bool = False

    def __post_init__(self) -> None:
        shape = (len(self.patches), len(self.classes))
        for name in ("scores", "calls"):
            value = np.asarray(getattr(self, name), dtype=np.float64 if name == "scores" else np.int64)
            if value.size == 0:
                value = value.reshape(shape)
            if value.shape != shape:
                raise ValueError(f"{name} has shape {value.shape}, expected {shape}")
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.patches)

    @property
    def truth(self) -> np.ndarray:
        """``(N, C)`` 0/1: the types each patch holds."""
        indicator = np.zeros((len(self.patches), len(self.classes)), dtype=np.int64)
        for row, patch in enumerate(self.patches):
            indicator[row, list(patch.labels)] = 1
        return indicator

    @property
    def single_label(self) -> bool:
        """Whether both sides speak of one type per patch: a softmax classifier, and one true type in each patch."""
        return not self.multi_label and all(len(patch.labels) == 1 for patch in self.patches)

    def wrong(self) -> np.ndarray:
        """``(N,)`` bool: the patches whose called types differ from their true ones."""
        return (self.calls != self.truth).any(axis=1)

    def class_indices(self, names: Sequence[str]) -> list[int]:
        """The indices of class ``names`` (see :func:`group_indices`)."""
        return group_indices(self.classes, names)


def group_indices(classes: Sequence[str], names: Sequence[str]) -> list[int]:
    """The indices in ``classes`` of the positive group's class ``names``.

    Raises:
        CytolensError: If a name is not one of ``classes``, or there are none.

    """
    if not names:
        raise CytolensError("the positive group names no class")
    unknown = [name for name in names if name not in classes]
    if unknown:
        raise CytolensError(f"the positive group names {unknown[0]!r}, not a class ({', '.join(classes)})")
    return [list(classes).index(name) for name in names]


def patch_metrics(scored: ScoredPatches, positive: Sequence[str] | None = None) -> dict[str, Any]:
    """Score a classifier's patches (see the module docstring).

    Args:
        scored: The patches, probabilities and calls.
        positive: Class names making a yes/no question (e.g. the abnormal types); ``None``: none asked.

    Returns:
        ``patches`` and ``images`` (how many), ``multi_label`` (which figures follow), the figures of
        :func:`~cytolens.metrics.classification.classification_metrics` (single-label: ``accuracy``,
        macro ``f1``, ``confusion``, ...) or of :func:`~cytolens.metrics.classification.multilabel_metrics`
        (``exact_match``, ``hamming``, ...), with ``per_class``; and, with ``positive``, ``positive``:
        its ``classes`` and the figures of :func:`~cytolens.metrics.classification.binary_metrics`.

    Raises:
        CytolensError: If ``positive`` names a class that is not one, or is empty.

    """
    truth = scored.truth
    if scored.single_label:
        figures = classification_metrics(truth.argmax(axis=1), scored.scores, scored.classes)
    else:
        figures = multilabel_metrics(truth, scored.scores, scored.classes, y_pred=scored.calls)
    result: dict[str, Any] = {
        "patches": len(scored),
        "images": len({patch.image for patch in scored.patches}),
        "multi_label": not scored.single_label,
        **figures,
    }
    if positive is not None:
        columns = scored.class_indices(positive)
        group = group_scores(truth, scored.scores, scored.calls, columns, scored.multi_label)
        result["positive"] = {"classes": list(positive), **binary_metrics(*group)}
    return result
