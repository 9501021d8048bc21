import numpy as np
import pytest
import torch

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.io import read_dataset
from cytolens.metrics.boxes import box_ap, plot_pr_curves


def image(image_id, boxes, labels, scores=None, size=200):
    cells = Cells(boxes=boxes, labels=labels, scores=scores)
    return AnnotatedImage(f"{image_id}.png", size, size, image_id, cells=cells)


def test_perfect_predictions_score_one_and_empty_classes_are_none():
    truth = Dataset(["a", "b", "c"], [image("i1", [[0, 0, 10, 10], [20, 20, 40, 30]], [0, 1])])
    pred = Dataset(["a", "b", "c"], [image("i1", [[0, 0, 10, 10], [20, 20, 40, 30]], [0, 1], [0.9, 0.3])])
    result = box_ap(pred, truth)
    # pycocotools computes precision as TP / (TP + FP + eps), so "1" is 1 - 1e-16.
    assert result["map50"] == pytest.approx(1.0) and result["map50_95"] == pytest.approx(1.0)
    assert result["per_class"]["a"] == pytest.approx({"ap50": 1.0, "ap50_95": 1.0, "recall": 1.0, "count": 1})
    assert result["per_class"]["c"] == {"ap50": None, "ap50_95": None, "recall": None, "count": 0}
    assert set(result["pr_curves"]) == {"a", "b"}
    curve = result["pr_curves"]["a"]
    assert len(curve["recall"]) == len(curve["precision"]) == 101 and curve["precision"] == pytest.approx([1.0] * 101)


def test_hand_computed_ap_with_a_false_positive_between_two_hits():
    # Ranked: hit (P 1, R 1/2), miss (P 1/2), hit (P 2/3, R 1). Interpolated precision is 1 at the
    # 51 recall points 0..0.50 and 2/3 at the 50 points 0.51..1 -> AP = (51 + 50 * 2/3) / 101.
    truth = Dataset(["a"], [image("i1", [[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0])])
    pred = Dataset(
        ["a"], [image("i1", [[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], [0, 0, 0], [0.9, 0.8, 0.7])]
    )
    result = box_ap(pred, truth)
    expected = (51 + 50 * 2 / 3) / 101
    assert result["map50"] == pytest.approx(expected, abs=1e-12)
    assert result["map50_95"] == pytest.approx(expected, abs=1e-12)


def test_iou_thresholds_and_no_plus_one_convention():
    truth = Dataset(["a", "b"], [image("i1", [[0, 0, 10, 10], [100, 100, 110, 110]], [0, 1])])
    # IoU 0.72 for class a: matched at thresholds 0.50..0.70 (5 of 10).
    # IoU 0.49 for class b (0.536 if sizes had +1): never matched.
    pred = Dataset(["a", "b"], [image("i1", [[0, 0, 10, 7.2], [100, 100, 110, 104.9]], [0, 1], [0.5, 0.5])])
    result = box_ap(pred, truth)
    assert result["per_class"]["a"]["ap50"] == pytest.approx(1.0)
    assert result["per_class"]["a"]["ap50_95"] == pytest.approx(0.5)
    assert result["per_class"]["b"]["ap50"] == 0.0
    assert result["map50"] == pytest.approx(0.5)


def test_classes_are_matched_by_name_and_missing_images_count_as_empty():
    truth = Dataset(["a", "b"], [image("i1", [[0, 0, 10, 10]], [0]), image("i2", [[0, 0, 10, 10]], [1])])
    pred = Dataset(["b", "a"], [image("i1", [[0, 0, 10, 10]], [1], [0.9])])
    result = box_ap(pred, truth)
    assert result["per_class"]["a"]["ap50"] == pytest.approx(1.0)
    assert result["per_class"]["b"]["ap50"] == 0.0


def test_more_than_100_cells_per_image_all_count():
    corners = np.array([[x * 12, y * 12, x * 12 + 10, y * 12 + 10] for x in range(15) for y in range(10)], float)
    truth = Dataset(["rbc"], [image("i1", corners, np.zeros(150, int))])
    pred = Dataset(["rbc"], [image("i1", corners, np.zeros(150, int), np.linspace(1, 0.1, 150))])
    assert box_ap(pred, truth)["map50"] == pytest.approx(1.0)
    assert box_ap(pred, truth, max_detections=100)["map50"] == pytest.approx(100 / 150, abs=0.01)


def random_case(rng, n_images=4, n_classes=3):
    truth_images, pred_images = [], []
    for i in range(n_images):
        n = rng.integers(3, 12)
        xy = rng.uniform(0, 160, (n, 2))
        gt = np.hstack([xy, xy + rng.uniform(10, 40, (n, 2))])
        labels = rng.integers(0, n_classes, n)
        keep = rng.random(n) < 0.8
        jittered = gt[keep] + rng.normal(0, 3, (keep.sum(), 4))
        jittered[:, 2:] = np.maximum(jittered[:, 2:], jittered[:, :2] + 1)
        fp_xy = rng.uniform(0, 160, (3, 2))
        fp = np.hstack([fp_xy, fp_xy + rng.uniform(10, 40, (3, 2))])
        pred_boxes = np.vstack([jittered, fp])
        pred_labels = np.concatenate([labels[keep], rng.integers(0, n_classes, 3)])
        flip = rng.random(len(pred_labels)) < 0.1
        pred_labels[flip] = rng.integers(0, n_classes, flip.sum())
        truth_images.append(image(f"i{i}", gt, labels))
        pred_images.append(image(f"i{i}", pred_boxes, pred_labels, rng.random(len(pred_labels))))
    classes = [f"c{k}" for k in range(n_classes)]
    return Dataset(classes, pred_images), Dataset(classes, truth_images)


def test_agrees_with_torchmetrics_on_random_cases(one_thread):
    from torchmetrics.detection import MeanAveragePrecision

    rng = np.random.default_rng(0)
    for _ in range(3):
        pred, truth = random_case(rng)
        # torchmetrics' default thresholds come from float32 linspace; pass COCO's float64 ones.
        metric = MeanAveragePrecision(
            box_format="xyxy",
            iou_type="bbox",
            iou_thresholds=np.linspace(0.5, 0.95, 10).tolist(),
            rec_thresholds=np.linspace(0, 1, 101).tolist(),
            class_metrics=True,
            max_detection_thresholds=[1, 10, 100],
        )
        metric.update(
            [
                {
                    "boxes": torch.tensor(p.cells.boxes, dtype=torch.float64),
                    "scores": torch.tensor(p.cells.scores, dtype=torch.float64),
                    "labels": torch.tensor(p.cells.labels),
                }
                for p in pred
            ],
            [
                {"boxes": torch.tensor(t.cells.boxes, dtype=torch.float64), "labels": torch.tensor(t.cells.labels)}
                for t in truth
            ],
        )
        expected = metric.compute()
        # pycocotools' summary reads AP at maxDets 100 whatever the thresholds, so compare at 100.
        result = box_ap(pred, truth, max_detections=100)
        assert result["map50"] == pytest.approx(float(expected["map_50"]), abs=1e-6)
        assert result["map50_95"] == pytest.approx(float(expected["map"]), abs=1e-6)
        by_class = dict(zip(expected["classes"].tolist(), expected["map_per_class"].tolist(), strict=True))
        for k, name in enumerate(truth.classes):
            assert result["per_class"][name]["ap50_95"] == pytest.approx(by_class[k], abs=1e-6)


def test_plot_pr_curves_writes_a_png(tmp_path):
    truth = Dataset(["a"], [image("i1", [[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0])])
    pred = Dataset(["a"], [image("i1", [[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0], [0.9, 0.8])])
    out = tmp_path / "plots" / "pr.png"
    plot_pr_curves(box_ap(pred, truth)["pr_curves"], out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["pr.png"]


def scored(dataset, keep=None):
    images = []
    for im in dataset:
        mask = np.ones(len(im.cells), bool) if keep is None else keep(im)
        images.append(image(im.image_id, im.cells.boxes[mask], im.cells.labels[mask], np.ones(mask.sum()), im.width))
    return Dataset(dataset.classes, images)


def test_bccd_test_split_against_itself_and_with_boxes_dropped(bccd):
    truth = read_dataset(bccd, "voc").subset("test")
    perfect = box_ap(scored(truth), truth)
    assert perfect["map50"] == pytest.approx(1.0) and perfect["map50_95"] == pytest.approx(1.0)

    def first_half(im):  # each image's first half of boxes (rounded up): every class loses some recall
        return np.arange(len(im.cells)) < (len(im.cells) + 1) // 2

    dropped = box_ap(scored(truth, first_half), truth)
    for k, name in enumerate(truth.classes):
        kept = sum(int((im.cells.labels[first_half(im)] == k).sum()) for im in truth)
        figures = dropped["per_class"][name]
        assert figures["recall"] == pytest.approx(kept / figures["count"])
        assert figures["recall"] < 1.0
        # All scores tie at 1.0 and every kept box is a hit: precision is 1 up to the recall reached.
        assert figures["ap50"] == pytest.approx(np.sum(np.linspace(0, 1, 101) <= figures["recall"] + 1e-12) / 101)
    assert dropped["map50"] < 1.0
