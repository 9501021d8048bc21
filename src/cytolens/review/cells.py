"""What the review page shows of an image: the latest round's proposals (uncertain or not), the expert's labels.

A proposal is uncertain or confident (:class:`cytolens.review.uncertainty.Uncertainty`); the page draws uncertain
proposals red, confident ones green and the expert's labels in their class's colour.

An image's labels, once saved, are its whole annotation (as :func:`cytolens.store.dataset.read_dataset` reads
them): the page's first action on an unlabelled image saves its proposals as labels, changed by that action.
A label still exactly as proposed is drawn with its proposal's uncertainty.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from cytolens.io.colors import class_color
from cytolens.review.uncertainty import Uncertainty
from cytolens.store.database import Store
from cytolens.store.labels import ImageLabelling, StoredLabel, read_labels
from cytolens.store.rounds import StoredProposal, read_proposals
from cytolens.store.schema import Image, Label, ModelVersion, Proposal, Round


def card_classes(card: dict[str, Any]) -> list[str]:
    """The classes of a model card as stored (a pipeline's: its classifier's)."""
    if "classifier" in card:
        return list(card["classifier"]["classes"])
    return list(card["classes"])


def store_classes(store: Store, model_classes: list[str] | None = None) -> list[str]:
    """The classes a reviewer chooses from, in order.

    Args:
        store: The store.
        model_classes: The proposing model's classes; by default those of the model of the store's latest round.

    Returns:
        The model's classes, then any other class of the store's proposals and labels, sorted.

    """
    with store.transaction() as session:
        if model_classes is None:
            latest = select(ModelVersion.card).join(Round).order_by(Round.number.desc()).limit(1)
            card = session.scalar(latest)
            model_classes = [] if card is None else card_classes(card)
        used = set(session.scalars(select(Proposal.class_name).distinct()))
        used |= set(session.scalars(select(Label.class_name).where(~Label.deleted).distinct()))
    return model_classes + sorted(used - set(model_classes) - {None})


def class_list(classes: list[str]) -> list[dict[str, Any]]:
    """The classes as the page lists them: each name with its colour (``#rrggbb``, the overlays' palette)."""
    return [{"name": name, "colour": "#{:02x}{:02x}{:02x}".format(*class_color(i))} for i, name in enumerate(classes)]


def _place(centre: tuple[float, float], box: tuple[float, float, float, float] | None) -> dict[str, Any]:
    return {"x": centre[0], "y": centre[1], "box": None if box is None else list(box)}


def _proposal(proposal: StoredProposal, thresholds: Uncertainty) -> dict[str, Any]:
    return {
        "id": proposal.id,
        **_place(proposal.centre, proposal.box),
        "class_name": proposal.class_name,
        "score": proposal.score,
        "uncertainties": proposal.uncertainties,
        "uncertain": thresholds.uncertain(proposal),
    }


def _label(label: StoredLabel) -> dict[str, Any]:
    return {
        "id": label.id,
        **_place(label.centre, label.box),
        "class_name": label.class_name,
        "proposal_id": label.proposal_id,
        "labelled_by": label.labelled_by,
        "labelled_at": label.labelled_at.isoformat(),
    }


def image_cells(store: Store, image: Image, thresholds: Uncertainty) -> dict[str, Any]:
    """An image's proposals (latest round) and current labels, as the page reads them (JSON data).

    Args:
        store: The store.
        image: The image's row.
        thresholds: What makes a proposal uncertain.

    Returns:
        ``image`` (id, name, width, height), ``version`` (of its labels; the save sends it back), ``saved_by``,
        ``saved_at``, ``alpha``, ``beta``, ``proposals`` and ``labels``.

    """
    labelling: ImageLabelling = read_labels(store, image.path)
    return {
        "image": {"id": image.id, "name": image.path, "width": image.width, "height": image.height},
        "version": labelling.version,
        "saved_by": labelling.saved_by,
        "saved_at": None if labelling.saved_at is None else labelling.saved_at.isoformat(),
        "alpha": thresholds.alpha,
        "beta": thresholds.beta,
        "proposals": [_proposal(proposal, thresholds) for proposal in read_proposals(store, image.path)],
        "labels": [_label(label) for label in labelling.labels],
    }
