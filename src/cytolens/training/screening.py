"""Fitting screeners (:mod:`cytolens.models.screening`): which types are abnormal, the truth, the fit.

:func:`fit_screener` fits scikit-learn's ``HistGradientBoostingClassifier`` on any table of screener
features; :func:`fit_image_screener` makes that table by running a cell model on annotated images, the
truth of each being whether its labels hold an abnormal type. ``HistGradientBoostingClassifier`` rather
than ``GradientBoostingClassifier``: it bins the features once and grows each tree on the bins, so that
patch-level tables of tens of thousands of cells fit in seconds, and its fitted state is a few arrays
per tree (``TreePredictor`` nodes) that skops stores without pickle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.errors import CytolensError, DataError
from cytolens.inference.model import Model
from cytolens.models.screening import Screener, feature_names, image_features
from cytolens.progress import progress as show_progress


def abnormal_types(
    classes: Sequence[str], abnormal: Sequence[str] | None = None, normal: Sequence[str] | None = None
) -> tuple[str, ...]:
    """The classes that count as abnormal: those named in ``abnormal``, or every class not named in ``normal``.

    Args:
        classes: The model's class names.
        abnormal: Names of the abnormal classes (``--abnormal``).
        normal: Names of the normal classes (``--normal``); every other class is abnormal.

    Returns:
        The abnormal classes, in the order of ``classes``.

    Raises:
        CytolensError: If both or neither are given, a name is not a class, or no class, or every class, is
            abnormal.

    Examples:
        >>> abnormal_types(["normal cell", "spherocyte", "teardrop"], normal=["normal cell"])
        ('spherocyte', 'teardrop')

    """
    if (abnormal is None) == (normal is None):
        raise CytolensError("name the abnormal classes (--abnormal) or the normal ones (--normal), not both")
    option, named = ("--abnormal", abnormal) if abnormal is not None else ("--normal", normal)
    unknown = [name for name in named if name not in classes]
    if unknown:
        raise CytolensError(f"{option}: {', '.join(map(repr, unknown))} not among the classes ({', '.join(classes)})")
    chosen = tuple(name for name in classes if (name in named) == (option == "--abnormal"))
    if not chosen or len(chosen) == len(classes):
        raise CytolensError(f"{option}: some classes must count as abnormal and some as normal")
    return chosen


def holds_abnormal(image: AnnotatedImage, classes: Sequence[str], abnormal: Sequence[str]) -> bool:
    """Whether any labelled cell, or an image label, of ``image`` is of an ``abnormal`` class.

    Args:
        image: An annotated image.
        classes: The class names its labels index.
        abnormal: The abnormal class names.

    """
    wanted = np.array([name in abnormal for name in classes] + [False])  # last: unclassified cells
    labels = np.concatenate([image.cells.labels, np.asarray(image.image_labels, dtype=np.int64)])
    return bool(wanted[np.where(labels >= 0, labels, len(classes))].any())


def _check_truth(truth: np.ndarray) -> None:
    """Refuse a truth without normal or without abnormal samples (nothing to tell apart)."""
    positives = int(truth.sum())
    if positives in (0, len(truth)):
        raise CytolensError(
            f"a screener needs normal and abnormal samples: {positives} of {len(truth)} hold an abnormal type"
        )


def fit_screener(
    features: np.ndarray,
    truth: np.ndarray,
    *,
    level: str,
    classes: Sequence[str],
    abnormal: Sequence[str],
    threshold: float = 0.5,
    seed: int = 0,
    provenance: Mapping[str, Any] | None = None,
) -> Screener:
    """Fit a screener on a feature table (columns :func:`~cytolens.models.screening.feature_names`).

    Args:
        features: ``(N, F)`` features, one row per patch or image.
        truth: ``(N,)`` bool: the sample holds an abnormal type.
        level: ``images`` or ``patches``.
        classes: The class names of the model the features come from.
        abnormal: The abnormal classes.
        threshold: Abnormal probability from which the screener calls a sample abnormal.
        seed: Seed of the estimator (its validation split, when it stops early on large tables).
        provenance: What the features come from, kept in the screener (JSON-like).

    Raises:
        CytolensError: If the table's width does not fit ``level`` and ``classes``, or it lacks normal or
            abnormal samples.

    """
    features = np.asarray(features, dtype=np.float64)
    truth = np.asarray(truth, dtype=bool).ravel()
    width = len(feature_names(level, classes))
    if features.shape != (len(truth), width):
        raise CytolensError(f"screener features must be ({len(truth)}, {width}), not of shape {features.shape}")
    _check_truth(truth)
    estimator = HistGradientBoostingClassifier(random_state=seed).fit(features, truth.astype(np.int64))
    return Screener(
        estimator=estimator,
        level=level,
        classes=tuple(classes),
        abnormal=tuple(abnormal),
        threshold=threshold,
        provenance={**(provenance or {}), "samples": len(truth), "abnormal_samples": int(truth.sum())},
    )


def predicted_image_features(
    model: Model, data: Dataset, batch_size: int = 1, progress: bool = True
) -> np.ndarray:
    """The ``images``-level features of ``model``'s cells (at its own thresholds, as ``predict`` finds them) on
    every image of ``data``, one row per image in its order.

    Raises:
        DataError: If an image cannot be read or processed (a fit needs all of them).

    """
    rows = []
    items = model.predict_iter([image.path for image in data.images], batch_size=batch_size)
    for item in show_progress(items, len(data), "predicting", progress):
        if isinstance(item, DataError):
            raise item
        rows.append(image_features(item.cells, len(model.classes)))
    return np.array(rows).reshape(len(rows), len(feature_names("images", model.classes)))


def fit_image_screener(
    model: Model,
    data: Dataset,
    abnormal: Sequence[str],
    threshold: float = 0.5,
    batch_size: int = 1,
    progress: bool = True,
    provenance: Mapping[str, Any] | None = None,
) -> Screener:
    """Fit an ``images``-level screener on ``model``'s cells in ``data``'s images, the truth from their labels.

    An image is abnormal when any of its labelled cells (or an image label) is of an ``abnormal`` class. In a
    partially labelled image (Chula RBC-12) that is a lower bound: unlabelled cells may be abnormal too.

    Args:
        model: The cell model (or detect -> classify pipeline) whose per-type outputs the screener reads.
        data: Annotated images whose classes are classes of ``model``.
        abnormal: The abnormal classes (see :func:`abnormal_types`).
        threshold: Abnormal probability from which the screener calls an image abnormal.
        batch_size: Images per forward pass.
        progress: Show a progress bar.
        provenance: Kept in the screener, over ``model`` (``model.source``) and ``data`` (its name); e.g. the
            model and classifier to load as ``model`` and ``classifier``.

    Raises:
        CytolensError: If ``data`` has classes ``model`` does not, or lacks normal or abnormal images.
        DataError: If an image cannot be read or processed.

    """
    foreign = [name for name in data.classes if name not in model.classes]
    if foreign:
        raise CytolensError(
            f"{data.name}: classes {', '.join(foreign)} are not classes of {model.source} "
            f"({', '.join(model.classes)}); map them in the dataset spec"
        )
    truth = np.array([holds_abnormal(image, data.classes, abnormal) for image in data.images], dtype=bool)
    _check_truth(truth)  # before predicting
    features = predicted_image_features(model, data, batch_size, progress)
    return fit_screener(
        features,
        truth,
        level="images",
        classes=model.classes,
        abnormal=abnormal,
        threshold=threshold,
        provenance={"model": model.source, "data": data.name, **(provenance or {})},
    )
