import numpy as np
import pytest

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.io import read_dataset
from cytolens.metrics.counting import count_metrics


def image(image_id, box_labels=(), point_labels=()):
    return AnnotatedImage(
        f"{image_id}.png",
        100,
        100,
        image_id,
        cells=Cells.concatenate([
            Cells(boxes=np.tile([0.0, 0.0, 5.0, 5.0], (len(box_labels), 1)), labels=list(box_labels)),
            Cells(centres=np.ones((len(point_labels), 2)), labels=list(point_labels)),
        ]),
    )


def test_counts_boxes_and_points_per_class_and_image():
    truth = Dataset(["rbc", "wbc"], [image("1", [0, 0, 0, 1]), image("2", [0], [1, 1]), image("3", [0, 0])])
    # Predictions name classes the other way round; image 3 has none.
    pred = Dataset(["wbc", "rbc"], [image("1", [1, 1, 0, 0]), image("2", [1, 1, 1], [0])])
    result = count_metrics(pred, truth)
    # rbc: pred (2, 3, 0) vs true (3, 1, 2) -> errors 1, 2, 2; wbc: pred (2, 1, 0) vs true (1, 2, 0) -> 1, 1, 0.
    assert result["per_class"]["rbc"] == pytest.approx(
        {"count_mae": 5 / 3, "count_relative_error": 5 / 6, "predicted": 5, "true": 6}
    )
    assert result["per_class"]["wbc"] == pytest.approx(
        {"count_mae": 2 / 3, "count_relative_error": 2 / 3, "predicted": 3, "true": 3}
    )
    assert result["count_mae"] == pytest.approx((5 / 3 + 2 / 3) / 2)
    assert result["per_image"][1] == {"image_id": "2", "rbc_pred": 3, "rbc_true": 1, "wbc_pred": 1, "wbc_true": 2}
    assert [row["image_id"] for row in result["per_image"]] == ["1", "2", "3"]


def test_unclassified_points_get_their_own_column_only_when_present():
    truth = Dataset(["a"], [image("1", point_labels=[UNCLASSIFIED, UNCLASSIFIED, 0])])
    pred = Dataset(["a", "extra"], [image("1", point_labels=[0, 1])])  # "extra" is unknown -> unclassified
    result = count_metrics(pred, truth)
    assert result["per_class"]["unclassified"] == pytest.approx(
        {"count_mae": 1.0, "count_relative_error": 0.5, "predicted": 1, "true": 2}
    )
    assert result["per_class"]["a"]["count_mae"] == 0.0
    plain = Dataset(["a"], [image("1", point_labels=[0])])
    assert list(count_metrics(plain, plain)["per_class"]) == ["a"]


def test_class_without_objects_has_no_relative_error():
    truth = Dataset(["a", "b"], [image("1", [0])])
    result = count_metrics(Dataset(["a", "b"], [image("1", [0, 1])]), truth)
    assert result["per_class"]["b"] == {"count_mae": 1.0, "count_relative_error": None, "predicted": 1, "true": 0}


def test_bccd_counts_against_itself_and_with_boxes_dropped(bccd):
    truth = read_dataset(bccd, "voc").subset("test")
    assert count_metrics(truth, truth)["count_mae"] == 0.0
    halved = Dataset(
        truth.classes,
        [image(im.image_id, im.cells.labels[: (len(im.cells.labels) + 1) // 2]) for im in truth],
    )
    result = count_metrics(halved, truth)
    for k, name in enumerate(truth.classes):
        missing = [int((im.cells.labels[(len(im.cells.labels) + 1) // 2 :] == k).sum()) for im in truth]
        assert result["per_class"][name]["count_mae"] == pytest.approx(np.mean(missing))
        assert result["per_class"][name]["true"] == sum(int((im.cells.labels == k).sum()) for im in truth)
    assert result["count_mae"] > 0


def test_predicted_images_outside_the_truth_are_ignored_with_a_warning(caplog):
    truth = Dataset(["a"], [image("1", [0])])
    pred = Dataset(["a"], [image("1", [0]), image("elsewhere", [0, 0])])
    with caplog.at_level("WARNING", logger="cytolens.metrics.pairing"):
        result = count_metrics(pred, truth)
    assert result["count_mae"] == 0.0 and [row["image_id"] for row in result["per_image"]] == ["1"]
    assert "1 predicted images are not in the ground truth" in caplog.text
