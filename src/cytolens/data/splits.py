"""Seeded, reproducible splits of image ids: by ratio, or into k folds.

Both shuffle the **sorted** ids with ``numpy.random.default_rng(seed).permutation``, so the result
depends only on the set of ids and the seed, never on reading order or platform.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


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
    if not 2 <= folds <= len(order):
        raise ValueError(f"need 2 <= folds <= {len(order)} (the number of images), got {folds}")
    parts = [list(part) for part in np.array_split(np.array(order, dtype=object), folds)]
    splits: dict[str, list[str]] = {}
    for k, part in enumerate(parts):
        splits[f"fold{k}"] = part
        splits[f"train{k}"] = [key for j, other in enumerate(parts) if j != k for key in other]
    return splits
