"""Proximity and class targets, and the point losses, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cytolens.data.annotations import UNCLASSIFIED
from cytolens.training.proximity import IGNORE, class_loss, class_target, proximity_loss, proximity_map


def formula(distance: float, d: float, a: float) -> float:
    return (math.exp(a * (1 - distance / d)) - 1) / (math.exp(a) - 1) if distance <= d else 0.0


def test_proximity_hand_checked_case():
    # One centre on pixel (col 2, row 1)'s centre, one off-grid at (6.0, 3.0) (a pixel corner).
    points = np.array([[2.5, 1.5], [6.0, 3.0]])
    out = proximity_map(points, (4, 8), d=2.0, a=3.0)
    assert out.dtype == np.float32 and out.shape == (4, 8)
    assert out[1, 2] == pytest.approx(1.0)
    # pixel (col 3, row 1): distance 1 to the first centre -> (e^1.5 - 1) / (e^3 - 1)
    assert out[1, 3] == pytest.approx((math.exp(1.5) - 1) / (math.exp(3) - 1), rel=1e-6)
    # pixel (col 5, row 2): centre (5.5, 2.5), distance sqrt(0.5) to (6, 3)
    assert out[2, 5] == pytest.approx(formula(math.sqrt(0.5), 2.0, 3.0), rel=1e-6)
    # pixel (col 0, row 3): distance sqrt(2^2 + 2^2) > d to both
    assert out[3, 0] == 0.0
    # exactly at d: 0 (the formula reaches 0 there)
    assert out[3, 2] == pytest.approx(0.0, abs=1e-7)  # centre (2.5, 3.5), distance 2 = d


def test_proximity_matches_formula_everywhere():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 20, size=(5, 2))
    out = proximity_map(points, (20, 20), d=4.5, a=2.0)
    rows, cols = np.mgrid[0:20, 0:20]
    centres = np.stack([cols + 0.5, rows + 0.5], axis=-1)
    nearest = np.linalg.norm(centres[:, :, None, :] - points[None, None], axis=-1).min(axis=-1)
    expected = np.vectorize(lambda dist: formula(dist, 4.5, 2.0))(nearest)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_proximity_without_points_and_bad_parameters():
    assert not proximity_map(np.zeros((0, 2)), (3, 4), d=5).any()
    with pytest.raises(ValueError, match="d > 0"):
        proximity_map(np.zeros((0, 2)), (3, 4), d=0)


def test_class_target_nearest_classified_within_radius():
    points = np.array([[1.5, 1.5], [6.5, 1.5], [3.5, 5.5]])
    labels = np.array([2, 0, UNCLASSIFIED])
    out = class_target(points, labels, (7, 8), radius=1.5)
    assert out.dtype == np.int64
    assert out[1, 1] == 2 and out[1, 2] == 2 and out[2, 2] == 2  # distance sqrt(2) <= 1.5
    assert out[1, 6] == 0 and out[1, 7] == 0
    assert out[5, 3] == IGNORE  # nearest centre is unclassified
    assert out[1, 4] == IGNORE  # too far from any centre
    assert (out >= 0).sum() == 2 * 9  # two 3x3 squares of pixels


def test_proximity_loss_formula():
    torch.manual_seed(0)
    output = torch.rand(2, 1, 3, 4)
    target = torch.rand(2, 1, 3, 4)
    lam = 5.0
    expected = 0.0
    for o, y in zip(output, target, strict=True):
        weight = y + lam * y.mean()
        expected += (weight * (o - y) ** 2).sum().item()
    expected /= output.numel()
    assert proximity_loss(output, target, lam).item() == pytest.approx(expected, rel=1e-6)
    assert proximity_loss(target, target).item() == 0.0


def test_class_loss_ignores_unlabelled_pixels():
    logits = torch.randn(1, 3, 2, 2)
    target = torch.tensor([[[1, IGNORE], [IGNORE, 2]]])
    picked = torch.stack([logits[0, :, 0, 0], logits[0, :, 1, 1]])
    expected = F.cross_entropy(picked, torch.tensor([1, 2]))
    assert class_loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    empty = class_loss(logits.requires_grad_(), torch.full((1, 2, 2), IGNORE))
    assert empty.item() == 0.0
    empty.backward()


def test_proximity_loss_counts_only_known_pixels():
    torch.manual_seed(0)
    output = torch.rand(2, 1, 3, 4)
    target = torch.rand(2, 1, 3, 4)
    assert proximity_loss(output, target, 5.0, torch.ones_like(target)).item() == pytest.approx(
        proximity_loss(output, target, 5.0).item(), rel=1e-6
    )
    known = torch.ones_like(target)
    known[0, 0, :, 2:] = 0  # half of the first image is unknown
    changed = output.clone()
    changed[0, 0, :, 2:] = 1 - changed[0, 0, :, 2:]
    assert proximity_loss(changed, target, 5.0, known).item() == pytest.approx(
        proximity_loss(output, target, 5.0, known).item(), rel=1e-6
    )
    # by hand: both means over the 6 + 12 known pixels
    expected = 0.0
    for o, y, k in zip(output, target, known, strict=True):
        weight = y + 5.0 * (y * k).sum() / k.sum()
        expected += (k * weight * (o - y) ** 2).sum().item()
    assert proximity_loss(output, target, 5.0, known).item() == pytest.approx(expected / 18, rel=1e-6)
