"""One class-balanced weight per patch, shared by the fast mode's loss and fine-tuning's sampler."""

from __future__ import annotations

import numpy as np

from cytolens.data.patches import Patch
from cytolens.training.class_balance import balanced_weights
from cytolens.training.fast_heads import _label_sets, patch_targets

# Types held: 0 by 9 patches, 1 by 3, 2 by 1. Rarest type of each: 0 for the six (0,), 1 for the two (0, 1) and
# the (1,), 2 for the (0, 2); so the groups hold 6, 3 and 1 patches, weighed 1/6, 1/3 and 1 before scaling to
# mean 1 (their mean is 3/10): 5/9, 10/9 and 10/3. A patch of none makes its own group.
LABELS = [(0,)] * 6 + [(0, 1)] * 2 + [(1,)] + [(0, 2)]


def test_a_multi_label_patch_weighs_as_its_rarest_type() -> None:
    weights = balanced_weights(LABELS)
    np.testing.assert_allclose(weights, [5 / 9] * 6 + [10 / 9] * 3 + [10 / 3])
    assert np.isclose(weights.mean(), 1.0)
    groups = [weights[:6].sum(), weights[6:9].sum(), weights[9]]
    np.testing.assert_allclose(groups, 10 / 3)  # every rarest type weighs the same in total
    np.testing.assert_allclose(balanced_weights([(0,), (0,), ()]), [0.75, 0.75, 1.5])
    assert balanced_weights([]).tolist() == []


def test_fast_mode_and_sampler_weigh_patches_alike() -> None:
    patches = [Patch(0, (10.0, 10.0), 8.0, labels, len(labels)) for labels in LABELS]
    multi = _label_sets(patch_targets(patches, 3, multi_label=True))
    assert multi == LABELS
    single = _label_sets(patch_targets(patches[:6] + patches[8:9], 3, multi_label=False))
    assert single == [(0,)] * 6 + [(1,)]
    np.testing.assert_allclose(balanced_weights(single), [7 / 12] * 6 + [7 / 2])  # N / (K * n_c), as before
