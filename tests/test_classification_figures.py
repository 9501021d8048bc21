"""Multi-label, grouped (yes/no) and patch figures on small cases whose every number was worked out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytolens.data.annotations import AnnotatedImage
from cytolens.data.patches import Patch
from cytolens.errors import CytolensError
from cytolens.metrics.classification import binary_metrics, group_scores, multilabel_metrics
from cytolens.metrics.patch_classification import ScoredPatches, group_indices, patch_metrics

TYPES = ["a", "b", "c"]
TRUTH = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 0]])
SCORES = np.array([[0.9, 0.2, 0.1], [0.8, 0.4, 0.3], [0.3, 0.7, 0.6], [0.6, 0.45, 0.2]])
# Called at 0.5: [1,0,0] right; [1,0,0] misses b; [0,1,1] right; [1,0,0] calls a falsely.


def test_multilabel_figures_by_hand() -> None:
    figures = multilabel_metrics(TRUTH, SCORES, TYPES)
    assert figures["exact_match"] == 0.5  # samples 0 and 2
    assert figures["hamming"] == pytest.approx(2 / 12)  # b of sample 1, a of sample 3
    assert figures["accuracy"] == pytest.approx(10 / 12)
    a, b, c = (figures["per_class"][name] for name in TYPES)
    # a: TP 2, FP 1 (sample 3), FN 0, TN 1; both positives (0.9, 0.8) above both negatives (0.3, 0.6).
    assert a == {"auc": 1.0, "sensitivity": 1.0, "specificity": 0.5, "f1": pytest.approx(0.8), "support": 2}
    # b: TP 1, FN 1 (sample 1), TN 2; positives 0.4, 0.7 against negatives 0.2, 0.45: 3 of 4 pairs in order.
    assert b == {"auc": 0.75, "sensitivity": 0.5, "specificity": 1.0, "f1": pytest.approx(2 / 3), "support": 2}
    assert c == {"auc": 1.0, "sensitivity": 1.0, "specificity": 1.0, "f1": 1.0, "support": 1}
    assert figures["auc"] == pytest.approx((1 + 0.75 + 1) / 3)
    assert figures["sensitivity"] == pytest.approx(2.5 / 3)
    assert figures["specificity"] == pytest.approx(2.5 / 3)
    assert figures["h_mean"] == pytest.approx(2.5 / 3)
    assert figures["f1"] == pytest.approx((0.8 + 2 / 3 + 1) / 3)


def test_multilabel_per_type_thresholds_and_given_calls() -> None:
    lower_b = multilabel_metrics(TRUTH, SCORES, TYPES, threshold=np.array([0.5, 0.35, 0.5]))
    # b now called in samples 1, 2, 3: sample 1 right, sample 3 wrong on a and b.
    assert lower_b["exact_match"] == 0.75
    assert lower_b["hamming"] == pytest.approx(2 / 12)
    assert lower_b["per_class"]["b"]["sensitivity"] == 1.0 and lower_b["per_class"]["b"]["specificity"] == 0.5
    argmax = np.eye(3, dtype=int)[SCORES.argmax(axis=1)]  # a, a, b, a: a single-label model's calls
    figures = multilabel_metrics(TRUTH, SCORES, TYPES, y_pred=argmax)
    assert figures["exact_match"] == 0.25  # sample 0 only
    assert figures["hamming"] == pytest.approx(3 / 12)  # b of sample 1, c of sample 2, a of sample 3


def test_group_of_types_in_multilabel_patches_by_hand() -> None:
    calls = (SCORES >= 0.5).astype(int)
    truth, score, called = group_scores(TRUTH, SCORES, calls, [1, 2], multi_label=True)
    assert truth.tolist() == [False, True, True, False]
    assert score.tolist() == [0.2, 0.4, 0.7, 0.45]  # the highest of b and c
    assert called.tolist() == [False, False, True, False]
    figures = binary_metrics(truth, score, called)
    assert figures == {
        "sensitivity": 0.5, "specificity": 1.0, "h_mean": pytest.approx(2 / 3), "accuracy": 0.75,
        "f1": pytest.approx(2 / 3), "auc": 0.75, "positives": 2, "negatives": 2, "tp": 1, "fp": 0, "tn": 2, "fn": 1,
    }


def test_group_of_classes_in_single_label_patches_by_hand() -> None:
    # normal, mild, severe; the group (mild or severe) is called when its summed probability reaches 0.5.
    truth_class = np.array([0, 0, 1, 2, 0])
    probabilities = np.array(
        [[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.3, 0.3, 0.4], [0.6, 0.1, 0.3], [0.9, 0.05, 0.05]]
    )
    calls = np.eye(3, dtype=int)[probabilities.argmax(axis=1)]
    truth, score, called = group_scores(np.eye(3, dtype=int)[truth_class], probabilities, calls, [1, 2], False)
    assert score == pytest.approx([0.3, 0.6, 0.7, 0.4, 0.1])
    assert called.tolist() == [False, True, True, False, False]  # sample 1: normal is the top class, yet 0.6 abnormal
    figures = binary_metrics(truth, score, called)  # TN, FP, TP, FN, TN
    assert (figures["tp"], figures["fp"], figures["tn"], figures["fn"]) == (1, 1, 2, 1)
    assert figures["sensitivity"] == 0.5
    assert figures["specificity"] == pytest.approx(2 / 3)
    assert figures["h_mean"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))  # 0.571
    assert figures["accuracy"] == pytest.approx(0.6)
    assert figures["f1"] == pytest.approx(0.5)
    assert figures["auc"] == pytest.approx(5 / 6)  # 0.7 beats all three negatives, 0.4 beats 0.3 and 0.1


def test_binary_figures_without_one_side() -> None:
    figures = binary_metrics(np.array([True, True]), np.array([0.9, 0.2]), np.array([True, False]))
    assert figures["auc"] is None and figures["specificity"] is None and figures["h_mean"] is None
    assert figures["sensitivity"] == 0.5


def scored(labels: list[tuple[int, ...]], scores: np.ndarray, multi_label: bool, tmp_path: Path) -> ScoredPatches:
    image = AnnotatedImage(tmp_path / "x.png", 100, 100)
    patches = [Patch(0, (10.0 * k, 50.0), 20.0, types) for k, types in enumerate(labels)]
    calls = (scores >= 0.5) if multi_label else np.eye(scores.shape[1])[scores.argmax(axis=1)]
    return ScoredPatches(TYPES, [image], patches, scores, calls.astype(int), multi_label)


def test_patch_metrics_single_label_with_a_group(tmp_path: Path) -> None:
    probabilities = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.3, 0.6, 0.1]])
    patches = scored([(0,), (1,), (1,), (2,)], probabilities, False, tmp_path)
    figures = patch_metrics(patches, positive=["c"])
    assert figures["patches"] == 4 and figures["images"] == 1 and figures["multi_label"] is False
    assert figures["accuracy"] == 0.5  # patch 2 called c, patch 3 called b
    assert figures["confusion"] == [[1, 0, 0], [0, 1, 1], [0, 1, 0]]
    assert patches.wrong().tolist() == [False, False, True, True]
    group = figures["positive"]
    assert group["classes"] == ["c"]
    assert (group["tp"], group["fp"], group["tn"], group["fn"]) == (0, 1, 2, 1)
    assert group["auc"] == pytest.approx(0.5 / 3)  # the c patch (0.1) ties one of the others (0.1, 0.3, 0.7): half


def test_patch_metrics_multilabel(tmp_path: Path) -> None:
    patches = scored([(0,), (0, 1), (1, 2), ()], SCORES, True, tmp_path)
    figures = patch_metrics(patches, positive=["b", "c"])
    assert figures["multi_label"] is True
    assert figures["exact_match"] == 0.5 and figures["hamming"] == pytest.approx(2 / 12)
    assert "confusion" not in figures
    assert figures["positive"]["auc"] == 0.75
    with pytest.raises(CytolensError, match="names 'd', not a class"):
        patch_metrics(patches, positive=["d"])
    with pytest.raises(CytolensError, match="no class"):
        patch_metrics(patches, positive=[])


def test_a_softmax_model_on_patches_of_several_types_is_scored_multilabel(tmp_path: Path) -> None:
    figures = patch_metrics(scored([(0,), (0, 1), (1, 2), ()], SCORES, False, tmp_path))
    assert figures["multi_label"] is True
    assert figures["exact_match"] == 0.25  # argmax calls: sample 0 right only


def test_group_indices() -> None:
    assert group_indices(TYPES, ["c", "a"]) == [2, 0]
    with pytest.raises(CytolensError, match=r"names 'd', not a class \(a, b, c\)"):
        group_indices(TYPES, ["a", "d"])
