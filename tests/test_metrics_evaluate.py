import json

import numpy as np
import pytest

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import CytolensError
from cytolens.io import read_dataset
from cytolens.metrics import evaluate_datasets


def as_json(result):
    return json.loads(json.dumps(result, allow_nan=False))


def test_boxes_give_ap_and_counts_merged_per_class():
    truth = Dataset(["wbc", "rbc"], [AnnotatedImage("1.png", 50, 50, cells=Cells(boxes=[[0, 0, 10, 10]], labels=[0]))])
    pred = Dataset(
        ["rbc", "wbc"],
        [
            AnnotatedImage(
                "1.png", 50, 50, cells=Cells(boxes=[[0, 0, 10, 10], [20, 20, 30, 30]], labels=[1, 0], scores=[0.9, 0.8])
            )
        ],
    )
    result = evaluate_datasets(pred, truth)
    assert as_json(result) == result
    assert {"map50", "map50_95", "count_mae", "per_class", "details"} == set(result)
    assert result["map50"] == pytest.approx(1.0)
    assert result["per_class"]["wbc"]["ap50"] == pytest.approx(1.0)
    assert result["per_class"]["wbc"]["count_mae"] == 0.0
    assert result["per_class"]["rbc"]["ap50"] is None
    assert result["per_class"]["rbc"]["count_mae"] == 1.0
    assert result["count_mae"] == 0.5
    assert set(result["details"]) == {"boxes", "counting"}
    assert "pr_curves" in result["details"]["boxes"]


def test_points_need_a_radius():
    truth = Dataset(["a"], [AnnotatedImage("1.png", 50, 50, cells=Cells(centres=[[5, 5], [20, 20]], labels=[0, 0]))])
    pred = Dataset(["a"], [AnnotatedImage("1.png", 50, 50, cells=Cells(centres=[[6, 5]], labels=[0], scores=[0.7]))])
    with pytest.raises(CytolensError, match="--radius"):
        evaluate_datasets(pred, truth)
    result = evaluate_datasets(pred, truth, radius=3)
    assert as_json(result) == result
    assert result["precision"] == 1.0 and result["recall"] == 0.5 and result["mean_distance"] == 1.0
    assert result["class_accuracy"] == 1.0 and result["macro_f1"] == 1.0
    assert result["count_mae"] == 1.0
    assert result["per_class"]["a"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "count": 2,
        "count_mae": 1.0,
        "count_relative_error": 0.5,
        "predicted": 1,
        "true": 2,
    }
    assert "map50" not in result and "accuracy" not in result


def test_image_labels_give_classification():
    truth = Dataset(["normal", "abnormal"], [AnnotatedImage(f"{i}.png", 9, 9, image_labels=[i % 2]) for i in range(4)])
    abnormal = [0.1, 0.7, 0.8, 0.9]  # labels 0, 1, 0, 1: one error (image 2), AUC 3/4
    pred = Dataset(
        ["normal", "abnormal"],
        [AnnotatedImage(f"{i}.png", 9, 9, image_scores=[1 - p, p]) for i, p in enumerate(abnormal)],
    )
    result = evaluate_datasets(pred, truth)
    assert as_json(result) == result
    assert {"accuracy", "auc", "sensitivity", "specificity", "h_mean", "per_class", "details"} == set(result)
    assert result["accuracy"] == 0.75 and result["auc"] == 0.75
    unscored = Dataset(["normal", "abnormal"], [AnnotatedImage(f"{i}.png", 9, 9) for i in range(4)])
    with pytest.raises(CytolensError, match="nothing to evaluate"):
        evaluate_datasets(unscored, truth)


def with_scores(dataset, keep):
    return Dataset(
        dataset.classes,
        [
            AnnotatedImage(
                im.path,
                im.width,
                im.height,
                im.image_id,
                cells=Cells(
                    boxes=im.cells.boxes[keep(im)], labels=im.cells.labels[keep(im)], scores=np.ones(keep(im).sum())
                ),
            )
            for im in dataset
        ],
    )


def test_bccd_test_split_against_itself_and_with_boxes_dropped(bccd):
    truth = read_dataset(bccd, "voc").subset("test")
    perfect = evaluate_datasets(with_scores(truth, lambda im: np.ones(len(im.cells), bool)), truth)
    assert perfect["map50"] == pytest.approx(1.0) and perfect["count_mae"] == 0.0
    assert as_json(perfect) == perfect

    def every_third_dropped(im):
        return np.arange(len(im.cells)) % 3 != 2

    dropped = evaluate_datasets(with_scores(truth, every_third_dropped), truth)
    for k, name in enumerate(truth.classes):
        figures = dropped["per_class"][name]
        kept = sum(int((im.cells.labels[every_third_dropped(im)] == k).sum()) for im in truth)
        assert figures["recall"] == pytest.approx(kept / figures["count"])
        assert figures["predicted"] == kept and figures["true"] == figures["count"]
        # Every kept box is a hit scored 1.0: AP50 is the share of COCO's 101 recall points reached.
        assert figures["ap50"] == pytest.approx(np.sum(np.linspace(0, 1, 101) <= figures["recall"] + 1e-12) / 101)
        assert 0.6 < figures["recall"] < 0.75
    assert dropped["map50"] < 0.75 and dropped["count_mae"] > 0
