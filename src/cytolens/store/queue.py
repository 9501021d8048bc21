"""The review queue: which image an expert should annotate next."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from cytolens.store.database import Store
from cytolens.store.schema import Image, ImageLabels, Relevance, Round


@dataclass(frozen=True)
class QueueEntry:
    """An image in the review queue.

    Attributes:
        image: Its stored name.
        relevance: Its relevance in the latest round that ranked it, or ``None`` if none did.
        version: Its labels' version (0: not yet labelled).

    """

    image: str
    relevance: float | None
    version: int

    @property
    def labelled(self) -> bool:
        """Whether its labels were ever saved."""
        return self.version > 0


def review_queue(store: Store) -> list[QueueEntry]:
    """Every image of the store in review order.

    Unlabelled images come first, then labelled ones; within each, by relevance in the latest round that
    ranked the image, highest first, images never ranked last; ties by name.
    """
    with store.transaction() as session:
        images = session.execute(select(Image.id, Image.path, ImageLabels.version).join(ImageLabels)).all()
        ranked = session.execute(select(Relevance.image_id, Relevance.value).join(Round).order_by(Round.number))
        relevance = dict(ranked.tuples().all())  # later rounds overwrite earlier ones
    entries = [QueueEntry(path, relevance.get(image_id), version) for image_id, path, version in images]
    return sorted(entries, key=lambda e: (e.labelled, e.relevance is None, -(e.relevance or 0.0), e.image))
