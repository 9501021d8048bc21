"""Model versions and annotation rounds: which model proposed which cells, how uncertain, and image relevance.

A round is what one model version proposed on some images: per cell its centre, box, class, score, class
probabilities and the uncertainties of the ranking (``Ud``, ``Uc``, ``Ur`` in the cells' extras, each
optional), and per image its relevance ``R`` (higher: annotate sooner), which orders the review queue.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from cytolens.data.annotations import AnnotatedImage
from cytolens.errors import DataError
from cytolens.io.digest import file_digest
from cytolens.models.checkpoint import StoredPipeline, read_stored
from cytolens.models.registry import bundled_models
from cytolens.store.database import Store
from cytolens.store.images import find_image, stored_name
from cytolens.store.labels import Box, as_utc
from cytolens.store.schema import ModelVersion, Proposal, Relevance, Round

UNCERTAINTIES = {"Ud": "ud", "Uc": "uc", "Ur": "ur"}
"""The cells' extras recorded with a proposal, and their columns."""


def _card(path: Path) -> dict[str, Any]:
    """The card of a model file as plain JSON data (a pipeline's: its own card and its two models')."""
    stored = read_stored(path)
    if isinstance(stored, StoredPipeline):
        return {
            "pipeline": dataclasses.asdict(stored.card),
            "detector": stored.detector.card.to_dict(),
            "classifier": stored.classifier.card.to_dict(),
        }
    return stored.card.to_dict()


def _default_name(path: Path) -> str:
    """A model file's name in the store: a bundled model's name, else its absolute path (to find it again)."""
    bundled = {file.resolve(): name for name, file in bundled_models().items()}
    return bundled.get(path.resolve(), str(path.resolve()))


def add_model_version(store: Store, path: str | Path, name: str | None = None) -> int:
    """Record a model file (once: by the sha256 of its bytes) with its card.

    Args:
        store: The store.
        path: A checkpoint or pipeline file.
        name: What to call it (by default a bundled model's name, else the file's absolute path, so that
            :func:`model_version_file` finds it again).

    Returns:
        The model version's id, for :func:`record_round`.

    Raises:
        ModelError: If the file is not a model cytolens can read.

    """
    path = Path(path)
    card, digest = _card(path), file_digest(path)
    with store.transaction() as session:
        known = session.scalar(select(ModelVersion.id).where(ModelVersion.sha256 == digest))
        if known is not None:
            return known
        version = ModelVersion(name=name or _default_name(path), sha256=digest, card=card)
        session.add(version)
        session.flush()
        return version.id


def _number(value: Any) -> float | None:
    """A float, or ``None`` for a missing (NaN) value: JSON and PostgreSQL take no NaN."""
    value = float(value)
    return None if math.isnan(value) else value


def _proposals(prediction: AnnotatedImage, classes: Sequence[str]) -> list[dict[str, Any]]:
    """The column values of a predicted image's cells."""
    cells = prediction.cells
    rows = []
    for i in range(len(cells)):
        box = cells.boxes[i] if cells.has_box[i] else np.full(4, np.nan)
        row = {
            "x": float(cells.centres[i, 0]),
            "y": float(cells.centres[i, 1]),
            **{key: _number(value) for key, value in zip(("x1", "y1", "x2", "y2"), box, strict=True)},
            "class_name": classes[cells.labels[i]] if cells.labels[i] >= 0 else None,
            "score": None if cells.scores is None else _number(cells.scores[i]),
            "probabilities": None if cells.probabilities is None else [_number(p) for p in cells.probabilities[i]],
        }
        uncertain = {
            column: _number(cells.extras[name][i]) for name, column in UNCERTAINTIES.items() if name in cells.extras
        }
        rows.append(row | uncertain)
    return rows


def record_round(
    store: Store,
    model_version: int,
    classes: Sequence[str],
    predictions: Sequence[AnnotatedImage],
    relevance: Sequence[float] | None = None,
) -> int:
    """Record a new annotation round, in one transaction: a model version's proposals and the images' relevance.

    Args:
        store: The store.
        model_version: The id :func:`add_model_version` gave.
        classes: The class names the predictions' labels index.
        predictions: Predicted images (e.g. :class:`cytolens.results.result.Result`), each an image of the store
            (its file under the root); their cells' extras ``Ud``, ``Uc``, ``Ur`` are recorded when present.
        relevance: Each prediction's image relevance, in order; ``None`` records none.

    Returns:
        The round's number (1 for the first).

    Raises:
        DataError: If the model version or an image is not in the store, or the relevance is not one finite number
            per prediction.

    """
    if relevance is not None and len(relevance) != len(predictions):
        raise DataError(store.name, f"{len(relevance)} relevance values for {len(predictions)} images")
    with store.transaction() as session:
        if session.get(ModelVersion, model_version) is None:
            raise DataError(store.name, f"no model version {model_version} in the store (add_model_version gives one)")
        number = (session.scalar(select(func.max(Round.number))) or 0) + 1
        round_ = Round(number=number, model_version_id=model_version)
        session.add(round_)
        session.flush()
        for i, prediction in enumerate(predictions):
            image = find_image(session, stored_name(store, prediction.path))
            session.add_all(
                Proposal(round_id=round_.id, image_id=image.id, **row) for row in _proposals(prediction, classes)
            )
            if relevance is not None:
                value = float(relevance[i])
                if not np.isfinite(value):
                    raise DataError(prediction.path, f"relevance {value} is not a finite number")
                session.add(Relevance(round_id=round_.id, image_id=image.id, value=value))
    return number


@dataclass(frozen=True)
class StoredProposal:
    """A cell a model proposed (see :class:`cytolens.store.schema.Proposal`).

    Attributes:
        id: Its row (a :class:`cytolens.store.labels.LabelDraft`'s ``proposal_id``).
        centre: ``x, y`` in pixels.
        box: ``x1, y1, x2, y2``, or ``None``.
        class_name: The class proposed, or ``None``.
        score: Its score, if any.
        probabilities: Its class probabilities, in the order of the model's classes, if any.
        uncertainties: ``Ud``, ``Uc``, ``Ur`` by name, those recorded.

    """

    id: int
    centre: tuple[float, float]
    box: Box | None
    class_name: str | None
    score: float | None
    probabilities: list[float] | None
    uncertainties: dict[str, float]


def read_proposals(store: Store, image: str, number: int | None = None) -> list[StoredProposal]:
    """The cells proposed on an image in round ``number`` (by default the latest round that proposed any).

    Raises:
        DataError: If the image is not in the store.

    """
    with store.transaction() as session:
        stored = find_image(session, image)
        query = select(Proposal, Round.number).join(Round).where(Proposal.image_id == stored.id)
        if number is None:
            latest = select(func.max(Round.number)).join(Proposal).where(Proposal.image_id == stored.id)
            number = session.scalar(latest)
        rows = session.scalars(query.where(Round.number == number).order_by(Proposal.id))
        return [
            StoredProposal(
                row.id,
                (row.x, row.y),
                None if row.x1 is None else (row.x1, row.y1, row.x2, row.y2),
                row.class_name,
                row.score,
                row.probabilities,
                {name: value for name, column in UNCERTAINTIES.items() if (value := getattr(row, column)) is not None},
            )
            for row in rows
        ]


@dataclass(frozen=True)
class StoredModelVersion:
    """A model version recorded by :func:`add_model_version`.

    Attributes:
        id: Its row.
        name: Its name: a bundled model's name or a file path, unless another name was given.
        sha256: The sha256 of the file's bytes.
        card: The card as the file stores it (a pipeline's: ``pipeline``, ``detector`` and ``classifier``).
        added_at: When it was recorded (UTC).

    """

    id: int
    name: str
    sha256: str
    card: dict[str, Any]
    added_at: datetime


def newest_model_version(store: Store) -> StoredModelVersion | None:
    """The model version recorded last (the store's current model), or ``None`` when none is."""
    with store.transaction() as session:
        row = session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc()).limit(1)).first()
        if row is None:
            return None
        return StoredModelVersion(row.id, row.name, row.sha256, dict(row.card), as_utc(row.added_at))


def model_version_file(version: StoredModelVersion) -> Path:
    """The file of a model version: its name as a bundled model or a file, still holding the bytes recorded.

    Raises:
        DataError: Naming the version's name, if it names no file (any more) or the file has changed since.

    """
    bundled = bundled_models()
    path = bundled.get(version.name, Path(version.name))
    if not path.is_file():
        raise DataError(version.name, "the model file recorded in the store is no longer there")
    if file_digest(path) != version.sha256:
        raise DataError(path, f"changed since it was recorded in the store (sha256 {version.sha256:.12}...)")
    return path
