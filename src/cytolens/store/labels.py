"""Experts' labels: reading an image's current labels and saving them with optimistic locking.

An image's labels carry a version (0 until first saved). A reviewer reads the labels with their version,
edits, and saves the whole set with the version read; the save is one transaction that first moves the
version on by a compare-and-set (``UPDATE ... WHERE version = :seen``), so of two reviewers who read the
same version only the first to save succeeds and the other gets a :class:`StaleWriteError`, with nothing
written. A save keeps the rows of unchanged labels, marks removed or changed ones ``deleted`` and adds
new rows for the rest, each with who saved it and when: nothing is erased.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cytolens.errors import CytolensError, DataError
from cytolens.io.validation import ClassNames, check_number
from cytolens.store.database import Store
from cytolens.store.images import find_image
from cytolens.store.schema import ImageLabels, Label, utc_now

Box = tuple[float, float, float, float]
"""``x1, y1, x2, y2`` in pixels."""


class StaleWriteError(CytolensError):
    """A save based on labels that someone else has changed since they were read."""


@dataclass(frozen=True)
class LabelDraft:
    """A cell as a reviewer saves it (coordinates as in :mod:`cytolens.data.annotations`).

    Attributes:
        centre: ``x, y`` in pixels (a box's centre for a box).
        box: ``x1, y1, x2, y2``, or ``None`` for a cell marked by its centre.
        class_name: Its class, or ``None`` for a cell of unknown class.
        proposal_id: The model proposal it was accepted or relabelled from, if any.
        label_id: The stored label it keeps (unchanged) or replaces; ``None`` for a new cell.

    """

    centre: tuple[float, float]
    box: Box | None = None
    class_name: str | None = None
    proposal_id: int | None = None
    label_id: int | None = None


@dataclass(frozen=True)
class StoredLabel:
    """A current label of an image, as stored.

    Attributes:
        id: Its row (a :class:`LabelDraft`'s ``label_id``).
        centre: ``x, y`` in pixels.
        box: ``x1, y1, x2, y2``, or ``None``.
        class_name: Its class, or ``None`` when unknown.
        proposal_id: The proposal it came from, if any.
        labelled_by: Who saved it.
        labelled_at: When (UTC).

    """

    id: int
    centre: tuple[float, float]
    box: Box | None
    class_name: str | None
    proposal_id: int | None
    labelled_by: str
    labelled_at: datetime

    def draft(self) -> LabelDraft:
        """The label as a draft that keeps it unchanged."""
        return LabelDraft(self.centre, self.box, self.class_name, self.proposal_id, self.id)


@dataclass(frozen=True)
class ImageLabelling:
    """An image's current labels and the version to save changes against.

    Attributes:
        image: The image's stored name.
        version: The labels' version (0: never saved).
        saved_by: Who saved last, if anyone.
        saved_at: When (UTC), if ever.
        labels: The current (not deleted) labels, in the order saved.

    """

    image: str
    version: int
    saved_by: str | None
    saved_at: datetime | None
    labels: tuple[StoredLabel, ...]


def as_utc(moment: datetime | None) -> datetime | None:
    """A stored time as an aware UTC time (SQLite gives it back without its zone)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _box(row: Label) -> Box | None:
    return None if row.x1 is None else (row.x1, row.y1, row.x2, row.y2)


def _stored(row: Label) -> StoredLabel:
    return StoredLabel(
        row.id, (row.x, row.y), _box(row), row.class_name, row.proposal_id, row.labelled_by, as_utc(row.labelled_at)
    )


def _current(session: Session, image_id: int) -> list[Label]:
    """The rows of an image's current (not deleted) labels, in the order saved."""
    return list(session.scalars(select(Label).where(Label.image_id == image_id, ~Label.deleted).order_by(Label.id)))


def read_labels(store: Store, image: str) -> ImageLabelling:
    """An image's current labels with their version.

    Raises:
        DataError: If the image is not in the store.

    """
    with store.transaction() as session:
        stored = find_image(session, image)
        state = session.get_one(ImageLabels, stored.id)
        labels = tuple(_stored(row) for row in _current(session, stored.id))
    return ImageLabelling(image, state.version, state.saved_by, as_utc(state.saved_at), labels)


def _checked(image: str, labels: Sequence[LabelDraft]) -> None:
    """Refuse drafts with coordinates that are not finite numbers, or class names that cannot be one."""
    names = ClassNames()
    for number, draft in enumerate(labels, 1):
        where = f"label {number}"
        coordinates = {"x": draft.centre[0], "y": draft.centre[1]}
        coordinates.update(zip(("x1", "y1", "x2", "y2"), draft.box or (), strict=False))
        for name, value in coordinates.items():
            check_number(value, f"{where} {name}", image)
        if draft.box is not None and not (draft.box[0] < draft.box[2] and draft.box[1] < draft.box[3]):
            raise DataError(image, f"{where}: box {draft.box} is empty (it needs x1 < x2 and y1 < y2)")
        if draft.class_name is not None:
            names.index(draft.class_name, image, where)


def _inside(image: str, labels: Sequence[LabelDraft], width: int, height: int) -> None:
    """Refuse drafts whose centre or box leaves the image (a box may touch its border)."""
    for number, draft in enumerate(labels, 1):
        x, y = draft.centre
        x1, y1, x2, y2 = draft.box or (x, y, x, y)
        if min(x, x1, y, y1) < 0 or max(x, x2) > width or max(y, y2) > height:
            shown = f"box {draft.box}" if draft.box is not None else f"centre {draft.centre}"
            raise DataError(image, f"label {number}: {shown} leaves the {width}x{height} image")


def _same(row: Label, draft: LabelDraft) -> bool:
    box = _box(row)
    return (
        math.isclose(row.x, draft.centre[0])
        and math.isclose(row.y, draft.centre[1])
        and (box is None) == (draft.box is None)
        and (box is None or all(math.isclose(a, b) for a, b in zip(box, draft.box, strict=True)))
        and row.class_name == draft.class_name
        and row.proposal_id == draft.proposal_id
    )


def save_labels(store: Store, image: str, labels: Sequence[LabelDraft], seen_version: int, who: str) -> int:
    """Save an image's labels (the whole current set) in one transaction, if no one changed them since read.

    Args:
        store: The store.
        image: The image's stored name.
        labels: Every label the image is to have; a draft with the ``label_id`` of a current label keeps that
            row when unchanged and replaces it otherwise; current labels not named are marked deleted.
        seen_version: The version the labels were read at (:func:`read_labels`).
        who: The reviewer, recorded with the labels.

    Returns:
        The labels' new version.

    Raises:
        StaleWriteError: If the labels' version is no longer ``seen_version`` (nothing is written).
        DataError: If the image is not in the store, a draft's numbers or class name cannot be, a draft's centre or
            box leaves the image, or a draft names a label that is not a current label of the image.

    """
    _checked(image, labels)
    now = utc_now()
    with store.transaction() as session:
        stored = find_image(session, image)
        _inside(image, labels, stored.width, stored.height)
        moved = session.execute(
            update(ImageLabels)
            .where(ImageLabels.image_id == stored.id, ImageLabels.version == seen_version)
            .values(version=seen_version + 1, saved_by=who, saved_at=now)
        )
        if moved.rowcount != 1:
            state = session.get_one(ImageLabels, stored.id, populate_existing=True)
            when = as_utc(state.saved_at)
            shown = f"{when:%Y-%m-%d %H:%M:%S} UTC" if when is not None else "an unknown time"
            raise StaleWriteError(
                f"image {image} was changed by {state.saved_by} at {shown} (version {state.version}, "
                f"not {seen_version} as read); reload it"
            )
        current = {row.id: row for row in _current(session, stored.id)}
        kept = set()
        for number, draft in enumerate(labels, 1):
            row = current.get(draft.label_id) if draft.label_id is not None else None
            if draft.label_id is not None and (row is None or draft.label_id in kept):
                raise DataError(image, f"label {number}: label {draft.label_id} is not a current label of the image")
            if row is not None and _same(row, draft):
                kept.add(row.id)
                continue
            box = draft.box or (None, None, None, None)
            session.add(
                Label(
                    image_id=stored.id,
                    x=draft.centre[0],
                    y=draft.centre[1],
                    x1=box[0],
                    y1=box[1],
                    x2=box[2],
                    y2=box[3],
                    class_name=draft.class_name,
                    labelled_by=who,
                    labelled_at=now,
                    proposal_id=draft.proposal_id,
                )
            )
            if row is not None:
                kept.add(row.id)
                row.deleted = True
        for row_id, row in current.items():
            if row_id not in kept:
                row.deleted = True
    return seen_version + 1
