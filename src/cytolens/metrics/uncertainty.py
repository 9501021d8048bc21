"""How uncertain a model is about each cell of an image, from repeated stochastic passes (MC dropout).

A model run ``N`` times over one image gives ``N`` records of cells (``passes``): ``passes[0]`` the plain,
deterministic prediction (the *reference*), ``passes[1:]`` stochastic passes with dropout active. Every score
here is per reference cell, and an image's scores add its cells' up.

- :func:`associate` lines each pass's cells up with the reference cells, one to one, by an optimal assignment
  (Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`): boxes on IoU (a pair needs IoU > 0; the
  assignment maximises the total IoU), points on centre distance within the matching radius (as
  :func:`cytolens.metrics.points.match_points` pairs predictions with the truth).
- :func:`detection_consistency` (``Ud``, 1 = every pass agrees): for boxes, the mean over passes ``2..N`` of the
  matched box's IoU with the reference box (0 when the pass lacks the cell). For points, the analogue from the
  centre's displacement ``d``: ``max(0, 1 - d / radius)`` when matched within the radius, 0 when absent, meaned
  likewise. A single pass (no stochastic ones) gives 1.
- :func:`class_consistency` (``Uc``): the frequency of the modal class over the ``N`` passes. A pass without
  the cell counts as a vote for no class: it lowers the frequency and can never be the mode, so a cell found
  in half the passes, always as the same class, has ``Uc = 0.5``.
- :func:`rare_flags` (``Ur``): 1 when the mean probability over the passes of any rare class exceeds the
  threshold (0.2).
- :func:`relevance` (``R``): ``#(Uc <= α) + #(Ud <= β) + γ·ΣUr`` over the image's cells.
- :func:`entropy` (predictive entropy ``H(mean_k p_k)``), :func:`bald` (mutual information
  ``H(mean_k p_k) - mean_k H(p_k)``), the standard heuristics to compare R with (and a random draw per image,
  which :mod:`cytolens.inference.ranking` makes). An image's entropy or BALD is the *sum* over its cells, like
  R: an image is worth what its cells would teach and costs what its cells take to annotate, and a mean would
  rank an image with one doubtful cell above one with twenty (an empty image scores 0).

Entropy and BALD are a few lines of :func:`scipy.stats.entropy` rather than baal's heuristics: baal's
``Entropy`` and ``BALD`` compute the same formulas but take torch-shaped ``(n, C, N)`` arrays, pull in torch
and its own package for two lines each, and rank whole pools, while this layer needs per-cell values on
numpy arrays (baal is not installed).

For a detector without class probabilities, :func:`pass_probabilities` builds the ``(N, n, C + 1)`` array from
the associated cells: the cell's score in its class's column, the rest (``1 - score``) in a last *background*
column, and a pass lacking the cell all background; ``Ur`` then flags a cell whose mean score as a rare class
exceeds the threshold.

Examples:
    >>> from cytolens.data.cells import Cells
    >>> reference = Cells(boxes=[[0, 0, 10, 10]], labels=[0])
    >>> shifted = Cells(boxes=[[5, 0, 15, 10]], labels=[0])
    >>> detection_consistency([reference, reference, shifted]).round(3).tolist()
    [0.667]
    >>> class_consistency(np.array([[1], [1], [2], [-1]])).tolist()
    [0.5]

"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import entropy as shannon_entropy

from cytolens.data.cells import Cells
from cytolens.metrics.points import match_points

ALPHA = 0.8
"""Default α of ``R``: a cell whose class consistency ``Uc`` is at most this is uncertain."""
BETA = 0.9
"""Default β of ``R``: a cell whose detection consistency ``Ud`` is at most this is uncertain."""
GAMMA = 10.0
"""Default γ of ``R``: the weight of each rare-class candidate."""
RARE_THRESHOLD = 0.2
"""The mean probability of a rare class above which a cell is a rare-class candidate (``Ur = 1``)."""

ABSENT = -1
"""Index (in :func:`associate`) or label (in :func:`class_consistency`) of a cell a pass lacks."""

HEURISTICS = ("relevance", "entropy", "bald", "random")
"""The image scores a pool can be ranked by (highest first)."""


def _box_overlaps(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """``(P, Q)`` IoU of ``(P, 4)`` with ``(Q, 4)`` ``xyxy`` boxes."""
    low = np.maximum(boxes[:, None, :2], others[None, :, :2])
    high = np.minimum(boxes[:, None, 2:], others[None, :, 2:])
    overlap = np.clip(high - low, 0, None).prod(axis=2)
    area = np.clip(boxes[:, 2:] - boxes[:, :2], 0, None).prod(axis=1)
    other_area = np.clip(others[:, 2:] - others[:, :2], 0, None).prod(axis=1)
    union = area[:, None] + other_area[None, :] - overlap
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def _all_boxes(cells: Cells) -> bool:
    """Whether every cell of ``cells`` has a box."""
    return cells.boxes is not None and bool(cells.has_box.all())


def _match(reference: Cells, cells: Cells, radius: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Each reference cell's match in ``cells`` (:data:`ABSENT` when none) and how well it agrees (0 when none)."""
    found = np.full(len(reference), ABSENT, dtype=np.int64)
    agreement = np.zeros(len(reference))
    if not len(reference) or not len(cells):
        return found, agreement
    if _all_boxes(reference) and _all_boxes(cells):
        overlaps = _box_overlaps(reference.boxes, cells.boxes)
        rows, cols = linear_sum_assignment(overlaps, maximize=True)
        keep = overlaps[rows, cols] > 0
        rows, cols = rows[keep], cols[keep]
        found[rows], agreement[rows] = cols, overlaps[rows, cols]
        return found, agreement
    if radius is None:
        raise ValueError("cells marked by their centres are associated within a matching radius: give radius")
    pairs, distances = match_points(reference.centres, cells.centres, radius)
    found[pairs[:, 0]] = pairs[:, 1]
    agreement[pairs[:, 0]] = np.clip(1 - distances / radius, 0, None) if radius > 0 else 1.0
    return found, agreement


def associate(passes: Sequence[Cells], radius: float | None = None) -> np.ndarray:
    """The cell of each pass matched to each reference cell (those of ``passes[0]``).

    Args:
        passes: The ``N`` records of one image; ``passes[0]`` is the reference.
        radius: The matching radius in pixels, needed unless every cell of every pass has a box (then boxes
            match on IoU).

    Returns:
        ``(N, n)`` int: the index in pass ``k`` of the cell matched to reference cell ``i``, :data:`ABSENT`
        when none (row 0 is ``0..n-1``).

    Raises:
        ValueError: If cells without boxes are to be matched and ``radius`` is ``None``.

    Examples:
        >>> a = Cells(centres=[[0, 0], [10, 10]], labels=[0, 0])
        >>> associate([a, Cells(centres=[[11, 10]], labels=[0])], radius=3).tolist()
        [[0, 1], [-1, 0]]

    """
    reference = passes[0]
    return np.array(
        [np.arange(len(reference))] + [_match(reference, cells, radius)[0] for cells in passes[1:]], dtype=np.int64
    ).reshape(len(passes), len(reference))


def detection_consistency(passes: Sequence[Cells], radius: float | None = None) -> np.ndarray:
    """``Ud`` of each reference cell: how well passes ``2..N`` find it again (see the module docstring).

    Args:
        passes: The ``N`` records of one image; ``passes[0]`` is the reference.
        radius: The matching radius in pixels (as for :func:`associate`).

    Returns:
        ``(n,)`` values in ``[0, 1]``; 1 when every pass has the cell exactly where the reference has it.

    Raises:
        ValueError: If cells without boxes are to be matched and ``radius`` is ``None``.

    """
    reference = passes[0]
    if len(passes) < 2:
        return np.ones(len(reference))
    return np.mean([_match(reference, cells, radius)[1] for cells in passes[1:]], axis=0).reshape(len(reference))


def pass_labels(passes: Sequence[Cells], matches: np.ndarray) -> np.ndarray:
    """``(N, n)`` the label each pass gives each reference cell (:data:`ABSENT` where the pass lacks it).

    Args:
        passes: The ``N`` records of one image.
        matches: Their association, from :func:`associate`.

    """
    labels = np.full(matches.shape, ABSENT, dtype=np.int64)
    for k, (cells, found) in enumerate(zip(passes, matches, strict=True)):
        labels[k, found >= 0] = cells.labels[found[found >= 0]]
    return labels


def pass_probabilities(passes: Sequence[Cells], matches: np.ndarray, n_classes: int) -> np.ndarray:
    """``(N, n, C + 1)`` a detector's class scores for each reference cell in each pass, and a background column.

    Each matched cell puts its score (1 when unscored) in its class's column and ``1 - score`` in the last;
    an unclassified cell, and a pass lacking the cell, put everything in the last column.

    Args:
        passes: The ``N`` records of one image.
        matches: Their association, from :func:`associate`.
        n_classes: ``C``, the number of classes the labels index.

    """
    probabilities = np.zeros((*matches.shape, n_classes + 1))
    labels = pass_labels(passes, matches)
    scores = np.zeros(matches.shape)
    for k, (cells, found) in enumerate(zip(passes, matches, strict=True)):
        if cells.scores is None:
            scores[k, found >= 0] = 1.0
        else:
            scores[k, found >= 0] = np.nan_to_num(cells.scores[found[found >= 0]], nan=1.0)
    scores[labels < 0] = 0.0
    passes_index, cells_index = np.nonzero(labels >= 0)
    probabilities[passes_index, cells_index, labels[labels >= 0]] = scores[labels >= 0]
    probabilities[..., -1] = 1.0 - scores
    return probabilities


def class_consistency(labels: np.ndarray) -> np.ndarray:
    """``Uc`` of each cell: the frequency of its modal class over the passes.

    Args:
        labels: ``(N, n)`` the class each pass gives each cell, :data:`ABSENT` (-1) where the pass lacks it (it
            counts among the ``N`` passes but votes for no class).

    Returns:
        ``(n,)`` values in ``[0, 1]`` (0 for a cell no pass classifies).

    Examples:
        >>> class_consistency(np.array([[0, 3], [0, 3], [1, -1], [0, -1]])).tolist()
        [0.75, 0.5]

    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        return np.zeros(labels.shape[1] if labels.ndim == 2 else 0)
    counts = np.zeros((labels.shape[1], int(labels.max(initial=0)) + 1))
    cells = np.broadcast_to(np.arange(labels.shape[1]), labels.shape)
    present = labels >= 0
    np.add.at(counts, (cells[present], labels[present]), 1)
    return counts.max(axis=1) / len(labels)


def rare_flags(probabilities: np.ndarray, rare: Sequence[int], threshold: float = RARE_THRESHOLD) -> np.ndarray:
    """``Ur`` of each cell: 1 when the mean probability over the passes of any rare class exceeds ``threshold``.

    Args:
        probabilities: ``(N, n, C)`` class probabilities of each cell in each pass.
        rare: The column indices of the rare classes (none: every flag is 0).
        threshold: The probability a rare class must exceed (strictly).

    Returns:
        ``(n,)`` floats, 0 or 1.

    Examples:
        >>> rare_flags(np.array([[[0.79, 0.21], [0.81, 0.19]]]), rare=[1]).tolist()
        [1.0, 0.0]

    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    rare = np.asarray(rare, dtype=np.int64)
    if not len(rare):
        return np.zeros(probabilities.shape[1])
    return (probabilities[..., rare].mean(axis=0) > threshold).any(axis=1).astype(np.float64)


def relevance(
    ud: np.ndarray, uc: np.ndarray, ur: np.ndarray, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA
) -> float:
    """``R`` of an image: ``#(Uc <= alpha) + #(Ud <= beta) + gamma * sum(Ur)`` over its cells.

    Args:
        ud: ``(n,)`` detection consistencies.
        uc: ``(n,)`` class consistencies.
        ur: ``(n,)`` rare-class flags.
        alpha: Largest ``Uc`` that counts a cell as uncertain in its class.
        beta: Largest ``Ud`` that counts a cell as uncertain in its detection.
        gamma: Weight of each rare-class candidate.

    Examples:
        >>> relevance(np.array([1.0, 0.5, 0.9]), np.array([0.8, 1.0, 1.0]), np.array([0.0, 1.0, 0.0]))
        13.0

    """
    return float(
        np.count_nonzero(np.asarray(uc) <= alpha) + np.count_nonzero(np.asarray(ud) <= beta) + gamma * np.sum(ur)
    )


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Predictive entropy (nats) of each cell: the entropy of its mean probabilities over the passes.

    Args:
        probabilities: ``(N, n, C)`` class probabilities of each cell in each pass.

    Returns:
        ``(n,)`` entropies, 0 for a certain cell, ``log C`` at most.

    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape[1] == 0:
        return np.zeros(0)
    return shannon_entropy(probabilities.mean(axis=0), axis=-1)


def bald(probabilities: np.ndarray) -> np.ndarray:
    """BALD of each cell: the mutual information between its class and the model's weights.

    The predictive entropy less the mean entropy of the single passes: high when the passes are each sure
    but disagree, 0 when they all give the same probabilities.

    Args:
        probabilities: ``(N, n, C)`` class probabilities of each cell in each pass.

    Returns:
        ``(n,)`` values in nats, at least 0.

    Examples:
        >>> bald(np.array([[[1.0, 0.0]], [[0.0, 1.0]]])).round(3).tolist()
        [0.693]

    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape[1] == 0:
        return np.zeros(0)
    expected = shannon_entropy(probabilities, axis=-1).mean(axis=0)
    return np.clip(entropy(probabilities) - expected, 0, None)

