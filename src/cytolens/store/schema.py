"""The tables of an annotation store, as SQLAlchemy 2.0 declarative models.

One row of ``images`` per image file (its path relative to the store's root folder, size and content
hash) with one ``image_labels`` row holding the version counter of its expert labels (0: never labelled;
each save adds one, so a save given an older version is refused). ``model_versions`` are the model files
that proposed cells (by content hash, with their cards); an annotation ``round`` is one model version's
``proposals`` (cells with their uncertainties) and the ``relevance`` of each image it ranked. ``labels``
are the experts' cells: who saved each and when, the proposal it came from, and a ``deleted`` flag, so
a later save marks rows deleted instead of erasing them and the history stays.

Times are UTC. The schema is created and upgraded by the Alembic migrations in ``migrations/``; a change
here needs a new migration there (``tests/test_store_migrations.py`` checks that they agree).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Constraint names, fixed so that migrations can name them on every database."""


def utc_now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """The declarative base of the store's tables."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON, list[float]: JSON}


class Image(Base):
    """An image file under the store's root folder."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), unique=True, comment="relative to the root, / separated")
    width: Mapped[int]
    height: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(default=utc_now)


class ImageLabels(Base):
    """The version of an image's expert labels (optimistic locking) and who saved them last, when."""

    __tablename__ = "image_labels"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    saved_by: Mapped[str | None] = mapped_column(String(200))
    saved_at: Mapped[datetime | None]


class ModelVersion(Base):
    """A model file that proposed cells: its name, content hash and card."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    card: Mapped[dict[str, Any]] = mapped_column(comment="the card as the model file stores it")
    added_at: Mapped[datetime] = mapped_column(default=utc_now)


class Round(Base):
    """An annotation round: the proposals and image relevance of one model version."""

    __tablename__ = "rounds"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(unique=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class Relevance(Base):
    """How much an image is worth annotating, as ranked in a round (higher first)."""

    __tablename__ = "relevance"

    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class CellPlace:
    """The columns placing a cell on its image: its centre, and its box when it has one (pixels)."""

    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    x1: Mapped[float | None] = mapped_column(Float)
    y1: Mapped[float | None] = mapped_column(Float)
    x2: Mapped[float | None] = mapped_column(Float)
    y2: Mapped[float | None] = mapped_column(Float)


class Proposal(CellPlace, Base):
    """A cell a model version proposed on an image in a round, with its uncertainties."""

    __tablename__ = "proposals"
    __table_args__ = (Index("ix_proposals_image_round", "image_id", "round_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    class_name: Mapped[str | None] = mapped_column(String(200))
    score: Mapped[float | None] = mapped_column(Float)
    probabilities: Mapped[list[float] | None] = mapped_column(comment="one per class of the model's card")
    ud: Mapped[float | None] = mapped_column(Float, comment="detection consistency")
    uc: Mapped[float | None] = mapped_column(Float, comment="classification consistency")
    ur: Mapped[float | None] = mapped_column(Float, comment="rare-class flag")


class Label(CellPlace, Base):
    """A cell an expert labelled (``deleted`` once a later save removed or changed it)."""

    __tablename__ = "labels"
    __table_args__ = (Index("ix_labels_image_deleted", "image_id", "deleted"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    class_name: Mapped[str | None] = mapped_column(String(200), comment="None: a cell of unknown class")
    labelled_by: Mapped[str] = mapped_column(String(200))
    labelled_at: Mapped[datetime] = mapped_column(default=utc_now)
    proposal_id: Mapped[int | None] = mapped_column(ForeignKey("proposals.id", ondelete="SET NULL"))
    deleted: Mapped[bool] = mapped_column(default=False)
