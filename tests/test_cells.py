"""The one record of an image's cells: selection, score filter, relabelling, boxes and points together."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.metrics import evaluate_datasets
from cytolens.results.result import Result


def predicted() -> Cells:
    return Cells(
        boxes=[[0, 0, 10, 10], [20, 20, 30, 40], [50, 0, 60, 4]],
        labels=[0, 1, UNCLASSIFIED],
        scores=[0.9, 0.4, 0.6],
        probabilities=[[0.8, 0.2], [0.3, 0.7], [0.5, 0.5]],
        extras={"uncertainty": [0.1, 0.2, 0.3]},
    )


def test_select_moves_every_per_cell_array_together() -> None:
    cells = predicted()
    np.testing.assert_allclose(cells.centres, [[5, 5], [25, 30], [55, 2]])  # box centres when not given
    for which in ([2, 0], np.array([2, 0])):
        chosen = cells.select(which)
        assert chosen.labels.tolist() == [UNCLASSIFIED, 0]
        np.testing.assert_allclose(chosen.boxes, [[50, 0, 60, 4], [0, 0, 10, 10]])
        np.testing.assert_allclose(chosen.centres, [[55, 2], [5, 5]])
        np.testing.assert_allclose(chosen.scores, [0.6, 0.9])
        np.testing.assert_allclose(chosen.probabilities, [[0.5, 0.5], [0.8, 0.2]])
        np.testing.assert_allclose(chosen.extras["uncertainty"], [0.3, 0.1])
    mask = cells.select(np.array([False, True, False]))
    assert mask.labels.tolist() == [1] and mask.extras["uncertainty"].tolist() == [0.2]
    nothing = cells.select([])
    assert len(nothing) == 0 and nothing.boxes.shape == (0, 4) and nothing.probabilities.shape == (0, 2)


def test_arrays_of_another_length_are_refused() -> None:
    with pytest.raises(ValueError, match="2 scores for 3 cells"):
        Cells(centres=np.zeros((3, 2)), labels=[0, 0, 0], scores=[0.1, 0.2])
    with pytest.raises(ValueError, match="1 uncertainty for 2 cells"):
        Cells(centres=np.zeros((2, 2)), labels=[0, 0], extras={"uncertainty": [0.5]})
    with pytest.raises(ValueError, match="needs its centre"):
        Cells(boxes=[[0, 0, 1, 1], [np.nan] * 4], labels=[0, 0])


def test_one_score_filter_per_class_with_unclassified_at_the_lowest() -> None:
    cells = predicted()
    assert cells.scoring_at_least(0.5, ["a", "b"]).labels.tolist() == [0, UNCLASSIFIED]
    per_class = cells.scoring_at_least({"a": 0.95, "b": 0.3}, ["a", "b"])
    assert per_class.labels.tolist() == [1, UNCLASSIFIED]  # the unclassified cell takes the lowest, 0.3
    assert cells.scoring_at_least(None, ["a", "b"]) is cells
    truth = Cells(centres=[[1, 1]], labels=[0])
    assert len(truth.scoring_at_least(0.99, ["a"])) == 1  # ground truth has no scores: kept
    with pytest.raises(ValueError, match="unknown classes"):
        cells.scoring_at_least({"c": 0.5}, ["a", "b"])


def test_relabel_maps_labels_and_moves_probability_columns() -> None:
    swapped = predicted().relabel(np.array([1, 0]), 2)
    assert swapped.labels.tolist() == [1, 0, UNCLASSIFIED]
    np.testing.assert_allclose(swapped.probabilities, [[0.2, 0.8], [0.7, 0.3], [0.5, 0.5]])
    merged = predicted().relabel(np.array([0, 0]), 1)
    assert merged.labels.tolist() == [0, 0, UNCLASSIFIED]
    np.testing.assert_allclose(merged.probabilities, [[1.0], [1.0], [1.0]])
    forgotten = predicted().relabel(np.array([UNCLASSIFIED, 0]), 1)
    assert forgotten.labels.tolist() == [UNCLASSIFIED, 0, UNCLASSIFIED]
    np.testing.assert_allclose(forgotten.probabilities, [[0.2], [0.7], [0.5]])


def test_boxes_and_points_in_one_record() -> None:
    boxes = Cells(boxes=[[0, 0, 4, 4]], labels=[1], scores=[0.9])
    points = Cells(centres=[[7, 8], [9, 9]], labels=[0, UNCLASSIFIED])
    cells = Cells.concatenate([boxes, points])
    assert cells.has_box.tolist() == [True, False, False]
    np.testing.assert_allclose(cells.centres, [[2, 2], [7, 8], [9, 9]])
    assert np.isnan(cells.scores[1:]).all()  # the points have no score
    assert cells.box_cells().scores.tolist() == [0.9] and cells.point_cells().scores is None
    assert cells.point_cells().boxes is None and cells.point_cells().labels.tolist() == [0, UNCLASSIFIED]
    assert cells.box_cells().boxes.tolist() == [[0, 0, 4, 4]]
    assert cells.scoring_at_least(0.95, ["a", "b"]).labels.tolist() == [0, UNCLASSIFIED]  # unscored stay
    assert Cells.concatenate([points]).boxes is None and Cells().box_cells().boxes.shape == (0, 4)


def test_image_and_dataset_relabel_image_labels_and_scores(tmp_path: Path) -> None:
    image = AnnotatedImage(tmp_path / "a.png", 10, 10, cells=predicted(), image_labels=[1, 0],
                           image_scores=[0.25, 0.75])
    dataset = Dataset(["a", "b"], [image], {"train": ["a"]}, "demo", "MIT")
    renamed = dataset.relabel(["b", "c"])  # by name: "a" is forgotten
    assert renamed.classes == ["b", "c"] and renamed.splits == {"train": ["a"]} and renamed.licence == "MIT"
    (out,) = renamed.images
    assert out.cells.labels.tolist() == [UNCLASSIFIED, 0, UNCLASSIFIED]
    assert out.image_labels == [0]
    np.testing.assert_allclose(out.image_scores, [0.75, 0.0])
    assert dataset.scoring_at_least({"a": 0.5, "b": 0.5}).images[0].cells.labels.tolist() == [0, UNCLASSIFIED]


def test_predictions_are_annotated_images_that_metrics_take_as_they_are(tmp_path: Path) -> None:
    truth = Dataset(["a", "b"], [AnnotatedImage(tmp_path / "x.png", 100, 100, "x", cells=Cells(
        boxes=[[0, 0, 10, 10], [20, 20, 30, 40]], labels=[0, 1]))])
    cells = replace(predicted(), labels=[1, 0, UNCLASSIFIED])  # "a", "b" in the model's class order
    result = Result(tmp_path / "x.png", 100, 100, cells=cells, classes=["b", "a"])
    figures = evaluate_datasets(Dataset(result.classes, [result]), truth, count_threshold=0.5)
    assert figures["map50"] == pytest.approx(1.0)  # classes matched by name, no conversion
    assert figures["details"]["counting"]["per_class"]["b"]["predicted"] == 0  # 0.4 is below the threshold
    aligned = result.relabel(np.array([1, 0]), ["a", "b"])
    assert isinstance(aligned, Result) and aligned.classes == ["a", "b"]
    assert aligned.counts() == {"a": 1, "b": 1} == {name: result.counts()[name] for name in ("a", "b")}
    np.testing.assert_allclose(aligned.cells.probabilities[0], [0.2, 0.8])
