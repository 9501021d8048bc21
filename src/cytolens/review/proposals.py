"""Proposals for the images of a store that have none: a model's ranking recorded as a round (``review --model``)."""

from __future__ import annotations

import logging

from sqlalchemy import select

from cytolens.errors import DataError
from cytolens.inference.model import load_model
from cytolens.inference.ranking import RankedImage, RankSettings, rank_iter, record_ranking
from cytolens.progress import progress
from cytolens.store.database import Store
from cytolens.store.images import image_file
from cytolens.store.schema import Image, Proposal, Relevance

log = logging.getLogger(__name__)


def unranked_images(store: Store) -> list[str]:
    """The store's images that no round proposed cells on or ranked, by name."""
    with store.transaction() as session:
        proposed, ranked = select(Proposal.image_id), select(Relevance.image_id)
        query = select(Image.path).where(Image.id.not_in(proposed), Image.id.not_in(ranked)).order_by(Image.path)
        return list(session.scalars(query))


def propose(
    store: Store,
    model: str,
    settings: RankSettings | None = None,
    device: str = "auto",
    show_progress: bool = True,
) -> int | None:
    """Rank the store's unranked images with a model and record its proposals and their relevance as a round.

    Each image gets the model's plain prediction with the cells' ``Ud``, ``Uc``, ``Ur`` and the image's relevance
    ``R`` (:func:`cytolens.inference.ranking.rank_iter`); an image that cannot be read is logged and left unranked.

    Args:
        store: The store.
        model: A bundled model name, checkpoint file or pipeline file.
        settings: The ranking's settings (passes, alpha, beta, gamma, rare classes...); by default
            :class:`~cytolens.inference.ranking.RankSettings`'s.
        device: Where to run the model.
        show_progress: Whether to show a progress bar.

    Returns:
        The round's number, or ``None`` when no image needed (or could get) proposals.

    Raises:
        ModelError: If the model cannot be read.

    """
    names = unranked_images(store)
    if not names:
        return None
    loaded = load_model(model, device=device)
    files = [image_file(store, name) for name in names]
    ranked: list[RankedImage] = []
    for item in progress(rank_iter(loaded, files, settings), len(files), "ranking", enabled=show_progress):
        if isinstance(item, DataError):
            log.error("%s", item)
            continue
        ranked.append(item)
    if not ranked:
        return None
    return record_ranking(store, model, loaded.classes, ranked)
