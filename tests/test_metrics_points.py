import numpy as np
import pytest
from sklearn.metrics import f1_score

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.metrics.points import match_points, point_metrics


def brute_force(pred, true, radius):
    """(largest number of pairs, smallest total distance among pairings of that size)."""
    distances = np.linalg.norm(pred[:, None] - true[None], axis=2)
    best = (0, 0.0)

    def extend(i, used, count, total):
        nonlocal best
        if (count, -total) > (best[0], -best[1]):
            best = (count, total)
        if i == len(pred):
            return
        extend(i + 1, used, count, total)
        for j in range(len(true)):
            if j not in used and distances[i, j] <= radius:
                extend(i + 1, used | {j}, count + 1, total + distances[i, j])

    extend(0, frozenset(), 0, 0.0)
    return best


def test_matching_is_maximal_and_then_shortest_against_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(200):
        pred = rng.uniform(0, 10, (rng.integers(0, 6), 2))
        true = rng.uniform(0, 10, (rng.integers(0, 6), 2))
        radius = rng.uniform(1, 5)
        pairs, distances = match_points(pred, true, radius)
        count, total = brute_force(pred, true, radius)
        assert len(pairs) == count
        assert distances.sum() == pytest.approx(total)
        assert (distances <= radius).all()
        assert len(set(pairs[:, 0])) == len(set(pairs[:, 1])) == len(pairs)
        np.testing.assert_allclose(distances, np.linalg.norm(pred[pairs[:, 0]] - true[pairs[:, 1]], axis=1))


def test_matching_prefers_more_pairs_over_nearest_pairs():
    # Greedy nearest-first pairs pred 0 with true 0 (0.4 apart) and leaves pred 1 unmatched.
    pred = np.array([[1.5, 0], [3.5, 0]])
    true = np.array([[1.9, 0], [0, 0]])
    pairs, distances = match_points(pred, true, radius=1.6)
    assert sorted(map(tuple, pairs)) == [(0, 1), (1, 0)]
    np.testing.assert_allclose(sorted(distances), [1.5, 1.6])


def test_matching_edge_cases():
    pairs, distances = match_points(np.zeros((0, 2)), np.array([[1.0, 1.0]]), 5)
    assert pairs.shape == (0, 2) and pairs.dtype == np.int64 and distances.shape == (0,)
    pairs, _ = match_points(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]]), 5)  # exactly on the radius
    assert pairs.tolist() == [[0, 0]]
    pairs, _ = match_points(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]]), 4.99)
    assert len(pairs) == 0
    with pytest.raises(ValueError, match="radius"):
        match_points(np.zeros((1, 2)), np.zeros((1, 2)), -1)


def image(image_id, points, labels, scores=None):
    cells = Cells(centres=points, labels=labels, scores=scores)
    return AnnotatedImage(f"{image_id}.png", 100, 100, image_id, cells=cells)


def test_point_metrics_hand_case():
    truth = Dataset(
        ["a", "b"],
        [
            image("i1", [[10, 10], [50, 50], [90, 90]], [0, 1, UNCLASSIFIED]),
            image("i2", [[20, 20], [60, 60]], [0, 0]),
            image("i3", [], []),
        ],
    )
    # Predictions list classes in the other order: index 0 is "b", 1 is "a".
    pred = Dataset(
        ["b", "a"],
        [
            # i1: (12,10) -> a as a (hit), (50,53) -> b as b, (90,91) -> unclassified truth as a, (0,99) false.
            image("i1", [[12, 10], [50, 53], [90, 91], [0, 99]], [1, 0, 1, 0], [0.9] * 4),
            # i2: (21,21) -> a predicted b; (60,60) missed (prediction 9 px away).
            image("i2", [[21, 21], [69, 60]], [0, 1], [0.9, 0.9]),
        ],
    )
    result = point_metrics(pred, truth, radius=5)
    assert (result["tp"], result["fp"], result["fn"]) == (4, 2, 1)
    assert result["precision"] == pytest.approx(4 / 6)
    assert result["recall"] == pytest.approx(4 / 5)
    assert result["f1"] == pytest.approx(8 / 11)
    assert result["mean_distance"] == pytest.approx((2 + 3 + 1 + np.sqrt(2)) / 4)
    # Classified matched pairs (true, predicted): (a, a), (b, b), (a, b).
    assert result["class_accuracy"] == pytest.approx(2 / 3)
    assert result["macro_f1"] == pytest.approx(f1_score([0, 1, 0], [0, 1, 1], average="macro"))
    assert result["weighted_f1"] == pytest.approx(f1_score([0, 1, 0], [0, 1, 1], average="weighted"))
    # Class a: 1 class-aware hit, 3 predicted as a, 3 true a. Class b: 1 hit, 3 predicted as b, 1 true b.
    assert result["per_class"]["a"] == pytest.approx({"precision": 1 / 3, "recall": 1 / 3, "f1": 1 / 3, "count": 3})
    assert result["per_class"]["b"] == pytest.approx({"precision": 1 / 3, "recall": 1.0, "f1": 0.5, "count": 1})
    assert result["per_image"] == [
        {"image_id": "i1", "tp": 3, "fp": 1, "fn": 0, "f1": pytest.approx(6 / 7)},
        {"image_id": "i2", "tp": 1, "fp": 1, "fn": 1, "f1": 0.5},
        {"image_id": "i3", "tp": 0, "fp": 0, "fn": 0, "f1": None},
    ]


def test_point_metrics_without_predictions_or_classes():
    truth = Dataset(["a"], [image("i1", [[10, 10]], [UNCLASSIFIED])])
    result = point_metrics(Dataset(["a"], []), truth, radius=3)
    assert (result["tp"], result["fp"], result["fn"]) == (0, 0, 1)
    assert result["precision"] is None and result["recall"] == 0.0 and result["f1"] == 0.0
    assert result["mean_distance"] is None and result["class_accuracy"] is None and result["macro_f1"] is None
    assert result["per_class"]["a"] == {"precision": None, "recall": None, "f1": None, "count": 0}
