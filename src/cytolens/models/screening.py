"""Screeners: is any abnormal cell present? A gradient-boosting stage on a cell model's per-type outputs.

A :class:`Screener` is a scikit-learn ``HistGradientBoostingClassifier`` with what is needed to use it:
the class names of the model whose outputs it reads, which of them count as abnormal, the level it
judges (:data:`LEVELS`) and the probability from which it calls a sample abnormal. Its input, at each
level (:func:`feature_names`):

- ``patches``: one row per patch (a cell), the model's probability of each type, ``p_<type>``;
- ``images``: one row per image (:func:`image_features`), the number of cells of each type
  (``count_<type>``), the highest probability of each type over its cells (``max_p_<type>``) and the
  number of cells (``cells``).

A screener file holds no pickle: it is a `skops <https://skops.readthedocs.io>`_ file of the estimator
and the metadata as JSON text. :func:`read_screener` first lists every type the file would build (from
the archive's ``schema.json``) and refuses a file holding any type not in :data:`TRUSTED_TYPES`, then
loads it with ``skops.io.load(path, trusted=TRUSTED_TYPES)``, so that opening a screener from a stranger
never runs code, the guarantee the checkpoints give (:mod:`cytolens.models.checkpoint`).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import skops.io
from sklearn.ensemble import HistGradientBoostingClassifier

from cytolens._version import __version__
from cytolens.data.cells import Cells
from cytolens.errors import CytolensError, ModelError
from cytolens.io.atomic import write_bytes
from cytolens.io.columns import probability_columns
from cytolens.io.validation import ClassNames, check_number

LEVELS = ("images", "patches")
"""What a screener judges: whole images (from their cells) or single patches."""

FORMAT_VERSION = 1
"""Layout of a screener file: a skops dict of ``cytolens_screener`` (this number), ``metadata`` (JSON text)
and ``estimator``."""

TRUSTED_TYPES = (
    "builtins.dict",
    "builtins.list",
    "builtins.str",
    "builtins.tuple",
    "numpy.ndarray",
    "numpy.random._generator.Generator",
    "numpy.uint64",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.preprocessing._label.LabelEncoder",
)
"""Every type a screener file holds (as skops names them): a fitted binary ``HistGradientBoostingClassifier``
and the plain containers around it. A file holding any other type is refused before anything is built."""


def feature_names(level: str, classes: Sequence[str]) -> list[str]:
    """The names of a screener's input columns at ``level`` for a model with ``classes`` (see the module docstring).

    Raises:
        ValueError: If ``level`` is not one of :data:`LEVELS`.

    """
    if level == "patches":
        return probability_columns(classes)
    if level == "images":
        return [*(f"count_{name}" for name in classes), *(f"max_p_{name}" for name in classes), "cells"]
    raise ValueError(f"screening level must be one of {', '.join(LEVELS)}, not {level!r}")


def image_features(cells: Cells, n_classes: int) -> np.ndarray:
    """The ``images``-level input row of one image's cells: per type its cell count and its highest probability
    over the cells, then the number of cells.

    Cells without class probabilities (box detectors) count for their own type with their score. An image
    without cells has zeros throughout.

    Examples:
        >>> cells = Cells(centres=[[1, 1], [5, 5]], labels=[1, 0], probabilities=[[0.2, 0.8], [0.6, 0.4]])
        >>> image_features(cells, 2).tolist()
        [1.0, 1.0, 0.6, 0.8, 2.0]

    """
    labels = cells.labels
    counts = np.bincount(labels[labels >= 0], minlength=n_classes).astype(np.float64)
    highest = np.zeros(n_classes)
    if cells.probabilities is not None and len(cells):
        highest = np.nan_to_num(cells.probabilities, nan=0.0).max(axis=0)
    elif cells.scores is not None:
        known = (labels >= 0) & ~np.isnan(cells.scores)
        np.maximum.at(highest, labels[known], cells.scores[known])
    return np.concatenate([counts, highest, [float(len(cells))]])


@dataclass(frozen=True, kw_only=True)
class Screener:
    """A fitted screener and what it needs to be used (see the module docstring).

    Attributes:
        estimator: The fitted binary ``HistGradientBoostingClassifier`` (class 1: abnormal).
        level: ``images`` or ``patches`` (:data:`LEVELS`).
        classes: The class names of the model whose outputs it reads, in that model's order.
        abnormal: The classes that count as abnormal.
        threshold: Abnormal probability from which a sample is called abnormal.
        provenance: What it was fitted on (model, data, split, numbers of samples), JSON-like.
        cytolens_version: The cytolens that fitted it.

    """

    estimator: HistGradientBoostingClassifier
    level: str
    classes: tuple[str, ...]
    abnormal: tuple[str, ...]
    threshold: float = 0.5
    provenance: Mapping[str, Any] = field(default_factory=dict)
    cytolens_version: str = __version__

    @property
    def feature_names(self) -> list[str]:
        """The names of its input columns."""
        return feature_names(self.level, self.classes)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """``(N,)`` abnormal probability of each row of ``(N, F)`` ``features`` (columns :attr:`feature_names`).

        Raises:
            ValueError: If ``features`` does not have one column per feature name.

        """
        features = np.asarray(features, dtype=np.float64)
        width = len(self.feature_names)
        if features.ndim != 2 or features.shape[1] != width:
            raise ValueError(f"screener features must be (N, {width}), not of shape {features.shape}")
        if not len(features):
            return np.zeros(0)
        return self.estimator.predict_proba(features)[:, 1]

    def image_probability(self, cells: Cells) -> float:
        """The abnormal probability of an image with these cells (an ``images``-level screener).

        Raises:
            CytolensError: If this screener judges patches.

        """
        if self.level != "images":
            raise CytolensError(f"this screener judges {self.level}, not images")
        return float(self.probabilities(image_features(cells, len(self.classes))[None])[0])

    def check_classes(self, classes: Sequence[str], model: str) -> None:
        """Refuse a model whose classes are not those this screener reads.

        Raises:
            CytolensError: Naming ``model`` and both class lists.

        """
        if list(classes) != list(self.classes):
            raise CytolensError(
                f"{model} has classes {', '.join(classes)}; the screener reads those of a model with classes "
                f"{', '.join(self.classes)}"
            )

    def metadata(self) -> dict[str, Any]:
        """Everything but the estimator, as JSON-like data (the ``metadata`` of a screener file)."""
        return {
            "level": self.level,
            "classes": list(self.classes),
            "abnormal": list(self.abnormal),
            "threshold": self.threshold,
            "feature_names": self.feature_names,
            "estimator": type(self.estimator).__name__,
            "provenance": dict(self.provenance),
            "cytolens_version": self.cytolens_version,
        }


def _names(value: Any, what: str, path: Path) -> tuple[str, ...]:
    """``value`` as distinct class names, or a :class:`ModelError` naming ``path``."""
    if not isinstance(value, list) or not value:
        raise ModelError(f"{path}: screener {what} must be a non-empty list of class names")
    reader = ClassNames()
    try:
        indices = [reader.index(name, path, f"screener {what}") for name in value]
    except CytolensError as error:
        raise ModelError(str(error)) from None
    if len(set(indices)) != len(indices):
        raise ModelError(f"{path}: screener {what} name a class twice")
    return tuple(value)


def _checked(metadata: Any, estimator: Any, path: Path) -> Screener:
    """The screener that ``metadata`` and ``estimator`` describe, every field checked, naming ``path``."""
    if not isinstance(metadata, dict):
        raise ModelError(f"{path}: screener metadata must be a JSON object")
    level = metadata.get("level")
    if level not in LEVELS:
        raise ModelError(f"{path}: screener level must be one of {', '.join(LEVELS)}, not {level!r:.40}")
    classes = _names(metadata.get("classes"), "classes", path)
    abnormal = _names(metadata.get("abnormal"), "abnormal types", path)
    unknown = sorted(set(abnormal) - set(classes))
    if unknown:
        raise ModelError(f"{path}: screener abnormal types {', '.join(unknown)} are not among its classes")
    try:
        threshold = check_number(metadata.get("threshold"), "screener threshold", path, low=0.0, high=1.0)
    except CytolensError as error:
        raise ModelError(str(error)) from None
    names = feature_names(level, classes)
    if metadata.get("feature_names") != names:
        raise ModelError(f"{path}: screener feature names do not match its level and classes")
    if not isinstance(estimator, HistGradientBoostingClassifier) or not hasattr(estimator, "classes_"):
        raise ModelError(f"{path}: the screener's estimator is not a fitted HistGradientBoostingClassifier")
    if estimator.n_features_in_ != len(names) or estimator.classes_.tolist() != [0, 1]:
        raise ModelError(f"{path}: the screener's estimator does not take {len(names)} features to normal/abnormal")
    provenance = metadata.get("provenance", {})
    version = metadata.get("cytolens_version")
    if not isinstance(provenance, dict) or not isinstance(version, str):
        raise ModelError(f"{path}: screener provenance must be a JSON object and cytolens_version text")
    return Screener(
        estimator=estimator,
        level=level,
        classes=classes,
        abnormal=abnormal,
        threshold=threshold,
        provenance=provenance,
        cytolens_version=version,
    )


def _stored_types(schema: Any) -> set[str]:
    """Every type (``module.Class``) that the nodes of a skops ``schema.json`` would build."""
    found, stack = set(), [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__class__" in node or "__module__" in node:
                found.add(f"{node.get('__module__')}.{node.get('__class__')}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _foreign_types(data: bytes | Path, path: Path) -> list[str]:
    """The types of skops archive ``data`` (bytes, or a file) that are not :data:`TRUSTED_TYPES`.

    Raises:
        ModelError: Naming ``path``, if the archive is damaged or holds no readable skops schema.

    """
    try:
        with zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data) as archive:
            damaged = archive.testzip()
            schema = None if damaged else json.loads(archive.read("schema.json"))
    except OSError as error:
        raise ModelError(f"{path}: cannot be read ({error.strerror or error})") from None
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, RecursionError) as error:
        problem = " ".join(str(error).split())[:120] or error.__class__.__name__
        raise ModelError(f"{path}: not a screener file (truncated, or not a skops archive: {problem})") from None
    if damaged is not None:
        raise ModelError(f"{path}: damaged: its entry {damaged} fails its CRC check")
    return sorted(_stored_types(schema) - set(TRUSTED_TYPES))


def save_screener(path: str | Path, screener: Screener) -> None:
    """Write ``screener`` to ``path`` atomically as a skops file (see the module docstring).

    Raises:
        ModelError: Naming ``path``, if the screener does not pass the checks of :func:`read_screener`, or
            holds types outside :data:`TRUSTED_TYPES` (another scikit-learn, whose files this cytolens refuses).

    """
    path = Path(path)
    _checked(json.loads(json.dumps(screener.metadata())), screener.estimator, path)
    data = skops.io.dumps(
        {
            "cytolens_screener": FORMAT_VERSION,
            "metadata": json.dumps(screener.metadata()),
            "estimator": screener.estimator,
        }
    )
    foreign = _foreign_types(data, path)
    if foreign:
        raise ModelError(f"{path}: not written: the screener holds types this cytolens does not read ({foreign})")
    write_bytes(path, data)


def read_screener(path: str | Path) -> Screener:
    """Read a screener file without running any code from it, checking every field.

    Raises:
        ModelError: Naming the file, if it is missing, damaged, not a screener file, holds a type outside
            :data:`TRUSTED_TYPES` (refused before anything is built), or its metadata do not check.

    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: screener file not found")
    foreign = _foreign_types(path, path)
    if foreign:
        shown = ", ".join(foreign)
        raise ModelError(f"{path}: refused: it holds types a cytolens screener does not ({shown:.200})")
    try:
        payload = skops.io.load(path, trusted=list(TRUSTED_TYPES))
    except Exception as error:  # skops raises assorted types on damaged or crafted files
        raise ModelError(f"{path}: not a loadable screener file ({error.__class__.__name__})") from None
    if not isinstance(payload, dict) or "cytolens_screener" not in payload:
        raise ModelError(f"{path}: not a cytolens screener file (no cytolens_screener entry)")
    if payload["cytolens_screener"] != FORMAT_VERSION:
        shown = repr(payload["cytolens_screener"])
        raise ModelError(f"{path}: screener format {shown:.20} is not one this cytolens reads ({FORMAT_VERSION})")
    try:
        metadata = json.loads(payload.get("metadata"))
    except (TypeError, ValueError, RecursionError):
        raise ModelError(f"{path}: its screener metadata are not JSON text") from None
    return _checked(metadata, payload.get("estimator"), path)


__all__ = ["LEVELS", "TRUSTED_TYPES", "Screener", "feature_names", "image_features", "read_screener", "save_screener"]
