"""Seeded, reproducible splits of image ids: by ratio, into k folds, or into k folds stratified by label.

Each works on the **sorted** ids (shuffled with ``numpy.random.default_rng(seed).permutation``, or by
scikit-learn's ``StratifiedKFold`` with ``random_state=seed``), so the result depends only on the set of
ids, their labels and the seed, never on reading order or platform. :func:`rarest_labels` gives the one
label that stands for an item of several labels (a multi-label patch, an image of many cells) when
stratifying or balancing classes: its rarest.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from sklearn.model_selection import StratifiedKFold


def _shuffled(ids: Iterable[str], seed: int) -> list[str]:
    ordered = sorted(set(ids))
    return [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]


def ratio_split(ids: Iterable[str], ratios: Mapping[str, float], seed: int = 0) -> dict[str, list[str]]:
    """Partition ``ids`` into named parts of the given fractions.

    Args:
        ids: Image ids (duplicates are ignored).
        ratios: Split name to fraction, e.g. ``{"train": 0.7, "val": 0.1, "test": 0.2}``; the
            fractions (finite and positive) are normalised to sum to one.
        seed: Random seed.

    Returns:
        Split name to ids, in shuffled order; every id is in exactly one split. Part sizes are
        the rounded cumulative fractions, so they add up to the number of ids.

    Raises:
        ValueError: If there is no split, or a fraction is not a finite positive number.

    """
    fractions = np.array(list(ratios.values()), dtype=np.float64)
    if not len(fractions) or not np.isfinite(fractions).all() or (fractions <= 0).any():
        raise ValueError(f"split ratios must be finite positive numbers, got {dict(ratios)}")
    order = _shuffled(ids, seed)
    ends = np.rint(np.cumsum(fractions) / fractions.sum() * len(order)).astype(int)
    starts = np.concatenate([[0], ends[:-1]])
    return {name: order[start:end] for name, start, end in zip(ratios, starts, ends, strict=True)}


def kfold_split(ids: Iterable[str], folds: int, seed: int = 0) -> dict[str, list[str]]:
    """Split ``ids`` into ``folds`` folds for cross-validation.

    Args:
        ids: Image ids (duplicates are ignored).
        folds: Number of folds, at least 2 and at most the number of ids.
        seed: Random seed.

    Returns:
        ``fold0`` ... ``fold{k-1}``: the held-out parts, which partition the ids (sizes differ by at
        most one); and ``train0`` ... ``train{k-1}``: for each fold, all the other ids.

    Raises:
        ValueError: If ``folds`` is out of range.

    """
    order = _shuffled(ids, seed)
    _check_folds(folds, len(order))
    return _named_folds([list(part) for part in np.array_split(np.array(order, dtype=object), folds)])


def stratified_kfold_split(labels: Mapping[str, int], folds: int, seed: int = 0) -> dict[str, list[str]]:
    """Split ids into ``folds`` folds that each hold about the same share of every label.

    Args:
        labels: Image id to the label it is stratified by (e.g. :func:`rarest_labels` of its labels; any
            integer, so that unlabelled images may share one of their own).
        folds: Number of folds, at least 2 and at most the number of ids. A label held by fewer ids than
            ``folds`` is missing from some folds (scikit-learn's warning about it is not shown).
        seed: Random seed.

    Returns:
        As :func:`kfold_split`: ``fold0`` ... held-out parts, which partition the ids, each in sorted order;
        ``train0`` ... the other ids of each fold.

    Raises:
        ValueError: If ``folds`` is out of range, or above the number of ids of every label.

    """
    order = sorted(labels)
    _check_folds(folds, len(order))
    y = np.array([labels[key] for key in order])
    if folds > max(Counter(y.tolist()).values()):
        raise ValueError(f"need folds <= {max(Counter(y.tolist()).values())} (the ids of the commonest label)")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        held_out = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
        return _named_folds([[order[i] for i in test] for _, test in held_out])


def _check_folds(folds: int, count: int) -> None:
    if not 2 <= folds <= count:
        raise ValueError(f"need 2 <= folds <= {count} (the number of images), got {folds}")


def _named_folds(parts: list[list[str]]) -> dict[str, list[str]]:
    """``fold{k}``: each held-out part; ``train{k}``: the ids of every other part."""
    splits: dict[str, list[str]] = {}
    for k, part in enumerate(parts):
        splits[f"fold{k}"] = part
        splits[f"train{k}"] = [key for j, other in enumerate(parts) if j != k for key in other]
    return splits


def rarest_labels(label_sets: Sequence[Iterable[int]]) -> np.ndarray:
    """For each item, the rarest of its labels: the one that the fewest items hold (a tie: the lower label).

    Args:
        label_sets: Each item's labels (repeats count once).

    Returns:
        ``(N,)`` int64: each item's rarest label, -1 for an item without labels.

    Examples:
        >>> rarest_labels([[0], [0, 2], [1, 0], []]).tolist()
        [0, 2, 1, -1]

    """
    sets = [set(labels) for labels in label_sets]
    counts = Counter(label for labels in sets for label in labels)
    return np.array([min(labels, key=lambda label: (counts[label], label)) if labels else -1 for labels in sets],
                    dtype=np.int64)
