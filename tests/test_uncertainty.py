"""Uncertainty scores of MC-dropout passes (cytolens.metrics.uncertainty) on hand-made pass sets."""

from __future__ import annotations

import numpy as np
import pytest

from cytolens.data.cells import Cells
from cytolens.metrics.uncertainty import (
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

BOXES = [[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 70]]


def _boxes(boxes: list[list[float]], labels: list[int] | None = None) -> Cells:
    return Cells(boxes=boxes, labels=labels or [0] * len(boxes), scores=[0.9] * len(boxes))


def test_identical_passes_are_fully_consistent() -> None:
    passes = [_boxes(BOXES, [0, 1, 2])] * 5
    assert associate(passes).tolist() == [[0, 1, 2]] * 5
    assert detection_consistency(passes).tolist() == [1.0, 1.0, 1.0]
    matches = associate(passes)
    assert class_consistency(pass_labels(passes, matches)).tolist() == [1.0, 1.0, 1.0]


def test_passes_in_another_order_are_associated() -> None:
    shuffled = _boxes([BOXES[2], BOXES[0], BOXES[1]])
    assert associate([_boxes(BOXES), shuffled]).tolist() == [[0, 1, 2], [1, 2, 0]]


def test_a_cell_missing_from_some_passes_lowers_ud() -> None:
    full, missing = _boxes(BOXES), _boxes(BOXES[:2])
    ud = detection_consistency([full, full, missing, missing, full])
    assert ud.tolist() == [1.0, 1.0, 0.5]
    assert associate([full, missing])[1].tolist() == [0, 1, -1]


def test_a_shifted_box_lowers_ud_by_its_iou() -> None:
    reference = _boxes([[0, 0, 10, 10]])
    shifted = _boxes([[2, 0, 12, 10]])  # overlap 8 x 10 = 80, union 120: IoU 2/3
    ud = detection_consistency([reference, reference, shifted])
    assert ud[0] == pytest.approx((1 + 2 / 3) / 2)


def test_boxes_that_do_not_overlap_are_not_matched() -> None:
    assert associate([_boxes([[0, 0, 10, 10]]), _boxes([[10, 0, 20, 10]])]).tolist() == [[0], [-1]]


def test_points_agree_by_displacement_within_the_radius() -> None:
    reference = Cells(centres=[[0, 0], [100, 100]], labels=[0, 0])
    moved = Cells(centres=[[3, 4], [100, 100]], labels=[0, 0])  # displaced by 5
    far = Cells(centres=[[30, 0]], labels=[0])
    assert detection_consistency([reference, moved], radius=10).tolist() == [0.5, 1.0]
    assert associate([reference, far], radius=10).tolist() == [[0, 1], [-1, -1]]
    with pytest.raises(ValueError, match="radius"):
        detection_consistency([reference, moved])


def test_a_single_pass_and_an_empty_image() -> None:
    assert detection_consistency([_boxes(BOXES)]).tolist() == [1.0, 1.0, 1.0]
    empty = Cells()
    assert associate([empty, _boxes(BOXES)]).shape == (2, 0)
    assert detection_consistency([empty, empty], radius=5).shape == (0,)
    assert class_consistency(np.zeros((3, 0), dtype=int)).shape == (0,)


def test_class_consistency_of_a_known_label_array() -> None:
    labels = np.array([
        [0, 2, 1, -1],
        [0, 2, 1, -1],
        [1, 2, 0, -1],
        [0, 1, -1, 3],
        [0, 2, -1, -1],
    ])
    assert class_consistency(labels).tolist() == [0.8, 0.8, 0.4, 0.2]


def test_rare_flag_threshold() -> None:
    probabilities = np.array([[[0.81, 0.19, 0.0], [0.79, 0.21, 0.0], [0.0, 0.0, 1.0]]])
    assert rare_flags(probabilities, rare=[1]).tolist() == [0.0, 1.0, 0.0]
    assert rare_flags(probabilities, rare=[1, 2]).tolist() == [0.0, 1.0, 1.0]
    assert rare_flags(probabilities, rare=[]).tolist() == [0.0, 0.0, 0.0]
    mean_of_passes = np.array([[[0.6, 0.4]], [[1.0, 0.0]], [[1.0, 0.0]]])  # mean 0.133
    assert rare_flags(mean_of_passes, rare=[1]).tolist() == [0.0]


def test_relevance_on_a_toy_table() -> None:
    ud = np.array([1.0, 0.95, 0.9, 0.3, 1.0])
    uc = np.array([1.0, 0.8, 0.85, 0.5, 1.0])
    ur = np.array([0.0, 0.0, 0.0, 1.0, 1.0])
    # Uc <= 0.8: 2 cells; Ud <= 0.9: 2 cells; 2 rare candidates
    assert relevance(ud, uc, ur) == 2 + 2 + 10 * 2
    assert relevance(ud, uc, ur, alpha=0.5, beta=0.2, gamma=1) == 1 + 0 + 2
    assert relevance(np.zeros(0), np.zeros(0), np.zeros(0)) == 0.0


def test_entropy_and_bald() -> None:
    sure = np.array([[[1.0, 0.0]], [[1.0, 0.0]]])
    unsure_alike = np.array([[[0.5, 0.5]], [[0.5, 0.5]]])
    disagreeing = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert entropy(sure).tolist() == [0.0]
    assert entropy(unsure_alike)[0] == pytest.approx(np.log(2))
    assert entropy(disagreeing)[0] == pytest.approx(np.log(2))
    assert bald(unsure_alike)[0] == pytest.approx(0.0)
    assert bald(disagreeing)[0] == pytest.approx(np.log(2))
    assert entropy(np.zeros((3, 0, 4))).shape == bald(np.zeros((3, 0, 4))).shape == (0,)


def test_detector_scores_as_probabilities_with_a_background_column() -> None:
    reference = Cells(boxes=BOXES[:2], labels=[0, 1], scores=[0.9, 0.6])
    other = Cells(boxes=BOXES[:1], labels=[1], scores=[0.5])
    passes = [reference, other]
    probabilities = pass_probabilities(passes, associate(passes), n_classes=2)
    expected = [[[0.9, 0.0, 0.1], [0.0, 0.6, 0.4]], [[0.0, 0.5, 0.5], [0.0, 0.0, 1.0]]]
    np.testing.assert_allclose(probabilities, expected)
    assert pass_labels(passes, associate(passes)).tolist() == [[0, 1], [1, -1]]



def test_the_review_page_uses_the_ranking_defaults():
    from cytolens.metrics import uncertainty
    from cytolens.review import uncertainty as review

    assert (review.ALPHA, review.BETA) == (uncertainty.ALPHA, uncertainty.BETA)
