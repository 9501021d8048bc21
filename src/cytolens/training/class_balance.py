"""Class-balanced weights of training patches: one definition for the loss weights of the fast mode
(:mod:`cytolens.training.fast_heads`) and the sampler of fine-tuning (:mod:`cytolens.training.patch_data`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from cytolens.data.splits import rarest_labels


def balanced_weights(label_sets: Sequence[Iterable[int]]) -> np.ndarray:
    """Each patch's weight for class-balanced training, scaled to mean 1: one over the number of patches of its
    type, so that every type weighs the same in total.

    A multi-label patch counts as its rarest type (:func:`~cytolens.data.splits.rarest_labels`), not as a mean
    over its types: class-balanced sampling is there so that rare types are seen as often as common ones, and a
    patch holding a rare cell is a sample of that rare type, whatever common cells touch it (a mean would let
    the common neighbours dilute it). Patches of no type make one group of their own.

    Args:
        label_sets: Each patch's types (class indices).

    Returns:
        ``(P,)`` float64 weights, mean 1.

    Examples:
        >>> balanced_weights([(0,), (0,), (0,), (1,)]).tolist()
        [0.6666666666666666, 0.6666666666666666, 0.6666666666666666, 2.0]

    """
    keys = rarest_labels(label_sets)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]
    return weights / weights.mean() if len(weights) else weights


__all__ = ["balanced_weights"]
