"""Which images an expert should annotate first: a model's MC-dropout passes scored per cell and per image.

:func:`rank_iter` runs a model's passes over images (:meth:`cytolens.inference.model.Model.passes_iter`: the plain
prediction, then stochastic passes with dropout in the heads) and yields, per image, a :class:`RankedImage`: the
plain :class:`~cytolens.results.result.Result` whose cells carry the extras ``Ud``, ``Uc`` and ``Ur``, the image's
relevance ``R``, the other heuristics' scores (entropy, BALD, random) and the counts of uncertain and rare-candidate
cells. :func:`score_passes` does it for one image's passes, :func:`ranking_table` orders the images, best first, and
:func:`record_ranking` records a ranking in an annotation store as a round (the review queue's order).

The scores are :mod:`cytolens.metrics.uncertainty`'s. ``Ud`` comes from the cells found (a pipeline's detector),
``Uc`` and ``Ur`` from the class probabilities of a pipeline's patch classifier in each pass; a model without
a classifier gives them from its cells' classes and scores across the passes (see
:func:`~cytolens.metrics.uncertainty.pass_probabilities`). Point cells are associated across passes within the
model's matching radius (its card's ``evaluation.radius``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cytolens.errors import DataError, ModelError
from cytolens.io.validation import ClassNames
from cytolens.metrics.uncertainty import (
    ALPHA,
    BETA,
    GAMMA,
    HEURISTICS,
    RARE_THRESHOLD,
    associate,
    bald,
    class_consistency,
    detection_consistency,
    entropy,
    pass_labels,
    pass_probabilities,
    rare_flags,
    relevance,
)
from cytolens.models.registry import resolve_model
from cytolens.store.rounds import add_model_version, record_round

if TYPE_CHECKING:
    from cytolens.inference.mc_dropout import Passes
    from cytolens.inference.model import Images, Model
    from cytolens.results.result import Result
    from cytolens.store.database import Store

@dataclass(frozen=True)
class RankSettings:
    """How images are ranked.

    Attributes:
        passes: How many passes (the plain one and ``passes - 1`` stochastic ones).
        seed: Seed of the dropout masks and of the random heuristic.
        dropout: Dropout probability in the heads during the stochastic passes (``None``: the model's own).
        alpha: Largest ``Uc`` at which a cell counts as uncertain in its class.
        beta: Largest ``Ud`` at which a cell counts as uncertain in its detection.
        gamma: Weight of each rare-class candidate in ``R``.
        rare: Names of the rare classes (none: no cell is a rare-class candidate).
        heuristic: What orders the images: ``relevance`` (``R``), ``entropy``, ``bald`` or ``random``.

    Raises:
        ValueError: If ``heuristic`` is none of these.

    """

    passes: int = 20
    seed: int = 0
    dropout: float | None = None
    alpha: float = ALPHA
    beta: float = BETA
    gamma: float = GAMMA
    rare: tuple[str, ...] = ()
    heuristic: str = "relevance"

    def __post_init__(self) -> None:
        if self.heuristic not in HEURISTICS:
            raise ValueError(f"unknown ranking heuristic {self.heuristic!r}; choose from {', '.join(HEURISTICS)}")


@dataclass(frozen=True)
class RankedImage:
    """One image of a ranked pool.

    Attributes:
        result: The plain prediction; its cells carry the extras ``Ud``, ``Uc``, ``Ur``.
        scores: The image's score by each heuristic (:data:`~cytolens.metrics.uncertainty.HEURISTICS`): ``R``
            under ``relevance``; the sums of its cells' entropies and BALD values; a seeded random draw.
        n_uncertain: Its cells with ``Uc <= alpha`` or ``Ud <= beta``.
        n_rare: Its rare-class candidates (``Ur = 1``).

    """

    result: Result
    scores: Mapping[str, float]
    n_uncertain: int
    n_rare: int

    @property
    def relevance(self) -> float:
        """The image's relevance ``R``."""
        return self.scores["relevance"]


def rare_indices(classes: Sequence[str], rare: Sequence[str], source: str) -> list[int]:
    """The indices in ``classes`` of the rare class names.

    Raises:
        DataError: Naming ``source`` (the model), if a name is not one of its classes.

    """
    names = ClassNames(list(classes))
    return [names.index(name, source, "rare classes") for name in rare]


def score_passes(
    result: Result,
    passes: Passes,
    settings: RankSettings,
    radius: float | None = None,
    rare: Sequence[int] = (),
    random: float = 0.0,
) -> RankedImage:
    """Score one image's passes.

    Args:
        result: The plain prediction (its cells those of ``passes.cells[0]``, in the same order).
        passes: The image's passes.
        settings: ``alpha``, ``beta``, ``gamma`` (the other settings were used to make the passes).
        radius: The matching radius in pixels, for point cells.
        rare: The indices of the rare classes in ``passes.classes``.
        random: The image's draw for the random heuristic.

    Raises:
        ValueError: If cells without boxes are to be associated and ``radius`` is ``None``.

    """
    matches = associate(passes.cells, radius)
    ud = detection_consistency(passes.cells, radius)
    if passes.probabilities is not None:
        probabilities = passes.probabilities
        labels = probabilities.argmax(axis=2)
    else:
        probabilities = pass_probabilities(passes.cells, matches, len(passes.classes))
        labels = pass_labels(passes.cells, matches)
    uc = class_consistency(labels)
    ur = rare_flags(probabilities, rare, RARE_THRESHOLD)
    cells = replace(result.cells, extras={**result.cells.extras, "Ud": ud, "Uc": uc, "Ur": ur})
    scores = {
        "relevance": relevance(ud, uc, ur, settings.alpha, settings.beta, settings.gamma),
        "entropy": float(entropy(probabilities).sum()),
        "bald": float(bald(probabilities).sum()),
        "random": float(random),
    }
    uncertain = (uc <= settings.alpha) | (ud <= settings.beta)
    return RankedImage(replace(result, cells=cells), scores, int(uncertain.sum()), int(ur.sum()))


def rank_iter(
    model: Model, images: Images, settings: RankSettings | None = None, **options: Any
) -> Iterator[RankedImage | DataError]:
    """Rank images image by image: a :class:`RankedImage`, or the :class:`DataError` of an image that failed (the
    settings are checked against the model at once, before any image).

    Args:
        model: The model (a pipeline's detector gives ``Ud``, its classifier ``Uc`` and ``Ur``).
        images: Image files, folders, glob patterns, or RGB arrays.
        settings: How to rank (default :class:`RankSettings`).
        options: Passed on to :meth:`~cytolens.inference.model.Model.passes_iter` (as to ``predict_iter``:
            ``batch_size``, ``score_threshold``, ``mpp``, tiling...).

    Raises:
        DataError: If a rare class is not one of the model's classes.
        ModelError: If the model finds points and its card names no matching radius.

    """
    settings = settings or RankSettings()
    rare = rare_indices(model.classes, settings.rare, model.source)
    radius = model.card.evaluation.radius
    if model.task == "points" and radius is None:
        raise ModelError(f"{model.source}: its card names no matching radius (evaluation.radius) to follow cells "
                         "across passes")
    return _ranked(model, images, settings, rare, radius, options)


def _ranked(
    model: Model, images: Images, settings: RankSettings, rare: list[int], radius: float | None, options: dict[str, Any]
) -> Iterator[RankedImage | DataError]:
    """:func:`rank_iter`'s images, once its arguments are checked."""
    draws = np.random.default_rng(settings.seed)
    items = model.passes_iter(images, passes=settings.passes, seed=settings.seed, dropout=settings.dropout, **options)
    for item, passes in items:
        if isinstance(item, DataError):
            yield item
            continue
        yield score_passes(item, passes, settings, radius, rare, draws.random())


def ranking_table(ranked: Sequence[RankedImage], heuristic: str = "relevance") -> pd.DataFrame:
    """One row per image, best first (by ``heuristic``'s score, highest first; ties by image id).

    Columns: ``image`` (its id), ``R``, ``entropy``, ``bald``, ``random``, ``n_cells``, ``n_uncertain``, ``n_rare``.
    """
    others = [name for name in HEURISTICS if name != "relevance"]
    table = pd.DataFrame(
        {
            "image": [item.result.image_id for item in ranked],
            "R": [item.relevance for item in ranked],
            **{name: [item.scores[name] for item in ranked] for name in others},
            "n_cells": [len(item.result.cells) for item in ranked],
            "n_uncertain": [item.n_uncertain for item in ranked],
            "n_rare": [item.n_rare for item in ranked],
        },
        columns=["image", "R", *others, "n_cells", "n_uncertain", "n_rare"],
    )
    key = "R" if heuristic == "relevance" else heuristic
    return table.sort_values([key, "image"], ascending=[False, True], kind="stable").reset_index(drop=True)


def record_ranking(
    store: Store, model: str, classes: Sequence[str], ranked: Sequence[RankedImage], heuristic: str = "relevance"
) -> int:
    """Record a ranking in an annotation store as a new round: the model's version, its cells with ``Ud``, ``Uc``,
    ``Ur``, and each image's score by ``heuristic`` as its relevance (so the review queue follows the ranking).

    Args:
        store: The store; every ranked image must be one of its images.
        model: The model's bundled name or file, recorded (once) as a model version.
        classes: The class names the cells' labels index.
        ranked: The ranked images.
        heuristic: Whose score becomes the images' relevance (``R`` by default).

    Returns:
        The round's number.

    Raises:
        DataError: If an image is not in the store.
        ModelError: If the model file cannot be read.

    """
    version = add_model_version(store, resolve_model(model))
    results = [item.result for item in ranked]
    return record_round(store, version, classes, results, [item.scores[heuristic] for item in ranked])
