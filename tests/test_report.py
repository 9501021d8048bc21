"""The evaluation report: per-image box matching, the worst-image gallery and its pictures, the HTML page."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import CytolensError
from cytolens.examples import path as examples_path
from cytolens.io.registry import read_dataset
from cytolens.metrics import evaluate_datasets
from cytolens.metrics.box_matching import match_boxes
from cytolens.metrics.gallery import OUTCOME_COLORS, draw_outcome, image_outcomes, worst_images
from cytolens.metrics.numbers import json_safe
from cytolens.metrics.report import RESEARCH_ONLY, write_report

CLASSES = ["a", "b"]


def grey_image(path: Path, width: int = 200, height: int = 100) -> Path:
    Image.new("RGB", (width, height), (128, 128, 128)).save(path)
    return path


def boxes_image(path: Path, boxes: list, labels: list, scores: list | None = None) -> AnnotatedImage:
    return AnnotatedImage(path, 200, 100, cells=Cells(boxes=boxes, labels=labels, scores=scores))


# --- match_boxes ----------------------------------------------------------------------------------


def test_the_best_scored_prediction_takes_the_true_box_even_at_lower_iou() -> None:
    pairs = match_boxes([[0, 0, 10, 10], [1, 0, 11, 10]], [0, 0], [0.6, 0.9], [[0, 0, 10, 10]], [0])
    assert pairs.tolist() == [[1, 0]]


def test_a_prediction_takes_the_unmatched_true_box_of_highest_iou() -> None:
    true = [[0, 0, 10, 10], [2, 0, 12, 10]]
    pairs = match_boxes([[2, 0, 12, 10], [1, 0, 11, 10]], [0, 0], [0.9, 0.8], true, [0, 0])
    assert pairs.tolist() == [[0, 1], [1, 0]]


def test_boxes_match_only_within_their_class() -> None:
    assert match_boxes([[0, 0, 10, 10]], [1], [0.9], [[0, 0, 10, 10]], [0]).shape == (0, 2)


def test_iou_threshold_is_inclusive() -> None:
    assert len(match_boxes([[0, 0, 10, 5]], [0], None, [[0, 0, 10, 10]], [0])) == 1  # IoU 0.5
    assert len(match_boxes([[0, 0, 10, 4.9]], [0], None, [[0, 0, 10, 10]], [0])) == 0


def test_matching_nothing() -> None:
    assert match_boxes(np.zeros((0, 4)), [], [], [[0, 0, 1, 1]], [0]).shape == (0, 2)
    assert match_boxes([[0, 0, 1, 1]], [0], [1.0], np.zeros((0, 4)), []).shape == (0, 2)


# --- per-image outcomes and the worst images ------------------------------------------------------


def test_box_outcome_counts_only_predictions_above_the_threshold(tmp_path: Path) -> None:
    image = grey_image(tmp_path / "x.png")
    truth = Dataset(CLASSES, [boxes_image(image, [[10, 10, 50, 50], [60, 10, 100, 50], [120, 10, 160, 50]], [0, 0, 1])])
    predicted = boxes_image(
        image,
        [[10, 10, 50, 50], [150, 60, 190, 95], [60, 10, 100, 50], [120, 10, 160, 50]],
        [0, 1, 0, 0],  # matched, false, below the threshold, wrong class
        [0.9, 0.8, 0.1, 0.7],
    )
    (outcome,) = image_outcomes(Dataset(CLASSES, [predicted]), truth, score_threshold=0.5)
    assert (outcome.tp, outcome.fp, outcome.fn) == (1, 2, 2)
    assert outcome.f1 == pytest.approx(2 / (2 + 2 + 2))
    missed = outcome.cells("missed")
    assert missed.boxes.tolist() == [[60, 10, 100, 50], [120, 10, 160, 50]] and missed.labels.tolist() == [0, 1]
    assert outcome.cells("false").boxes.tolist() == [[150, 60, 190, 95], [120, 10, 160, 50]]
    assert outcome.cells("matched").boxes.tolist() == [[10, 10, 50, 50]]


def test_worst_images_skips_perfect_ones_and_puts_more_errors_first_at_equal_f1(tmp_path: Path) -> None:
    image = grey_image(tmp_path / "x.png")
    one, two = [[10, 10, 50, 50]], [[10, 10, 50, 50], [60, 10, 100, 50]]
    truth = Dataset(
        CLASSES,
        [
            replace(boxes_image(image, one, [0]), image_id="perfect"),
            replace(boxes_image(image, [], []), image_id="empty"),
            replace(boxes_image(image, two, [0, 0]), image_id="half of two"),
            replace(boxes_image(image, two + [[120, 10, 160, 50], [10, 60, 50, 95]], [0] * 4), image_id="half of four"),
            replace(boxes_image(image, one, [0]), image_id="nothing found"),
        ],
    )
    predictions = Dataset(
        CLASSES,
        [
            replace(boxes_image(image, one, [0], [0.9]), image_id="perfect"),
            replace(boxes_image(image, two, [0, 0], [0.9, 0.9]), image_id="half of four"),
            replace(boxes_image(image, one, [0], [0.9]), image_id="half of two"),
        ],
    )
    outcomes = image_outcomes(predictions, truth)
    assert [outcome.f1 for outcome in outcomes] == pytest.approx([1.0, None, 2 / 3, 2 / 3, 0.0], nan_ok=True)
    worst = worst_images(outcomes, 3)
    assert [outcome.truth.image_id for outcome in worst] == ["nothing found", "half of four", "half of two"]
    assert [outcome.truth.image_id for outcome in worst_images(outcomes, 1)] == ["nothing found"]


def points_datasets(image: Path) -> tuple[Dataset, Dataset]:
    truth = AnnotatedImage(image, 200, 100, cells=Cells(centres=[[20, 20], [60, 20], [100, 50]], labels=[0, 1, -1]))
    predicted = AnnotatedImage(
        image, 200, 100, cells=Cells(centres=[[22, 21], [61, 26], [180, 80]], labels=[0, 0, 1], scores=[0.9, 0.8, 0.7])
    )
    return Dataset(CLASSES, [predicted]), Dataset(CLASSES, [truth])


def test_point_outcomes_agree_with_the_point_metrics(tmp_path: Path) -> None:
    predictions, truth = points_datasets(grey_image(tmp_path / "x.png"))
    (outcome,) = image_outcomes(predictions, truth, radius=5)
    assert (outcome.tp, outcome.fp, outcome.fn) == (1, 2, 2)  # (61, 26) is 6 px from (60, 20)
    figures = evaluate_datasets(predictions, truth, radius=5)
    assert outcome.f1 == pytest.approx(figures["details"]["points"]["per_image"][0]["f1"])
    with pytest.raises(CytolensError, match="radius"):
        image_outcomes(predictions, truth)


# --- pictures -------------------------------------------------------------------------------------


def test_the_picture_draws_each_outcome_in_its_colour(tmp_path: Path) -> None:
    image = grey_image(tmp_path / "x.png")
    truth = Dataset(CLASSES, [boxes_image(image, [[10, 10, 50, 50], [60, 10, 100, 50]], [0, 0])])
    predictions = Dataset(CLASSES, [boxes_image(image, [[10, 10, 50, 50], [120, 10, 160, 50]], [0, 1], [0.9, 0.9])])
    (outcome,) = image_outcomes(predictions, truth)
    picture = draw_outcome(outcome, CLASSES)
    assert picture.shape == (100, 200, 3)
    for name, x in (("matched", 30), ("missed", 80), ("false", 140)):  # the bottom edge of each box
        assert tuple(picture[50, x]) == OUTCOME_COLORS[name], name
    assert tuple(picture[80, 30]) == (128, 128, 128)


def test_a_large_picture_is_shrunk_and_points_are_drawn(tmp_path: Path) -> None:
    image = grey_image(tmp_path / "big.png", 1600, 800)
    truth = Dataset(CLASSES, [AnnotatedImage(image, 1600, 800, cells=Cells(centres=[[400, 400]], labels=[0]))])
    (outcome,) = image_outcomes(Dataset(CLASSES, []), truth, radius=10)
    picture = draw_outcome(outcome, CLASSES, max_size=800)
    assert picture.shape == (400, 800, 3)
    assert tuple(picture[200, 200]) == OUTCOME_COLORS["missed"]


# --- the report -----------------------------------------------------------------------------------


def embedded_pictures(page: str) -> int:
    return len(re.findall(r'src="data:image/png;base64,', page))


def test_report_on_the_examples_with_errors_on_two_images(tmp_path: Path) -> None:
    truth = read_dataset(examples_path(), "voc")
    scored = [replace(image, cells=replace(image.cells, scores=np.full(len(image.cells), 0.9))) for image in truth]
    by_id = {image.image_id: image for image in scored}
    few = by_id["BloodImage_00011"]
    by_id["BloodImage_00011"] = replace(few, cells=few.cells.select(np.arange(5, len(few.cells))))
    more = by_id["BloodImage_00015"]
    boxes = [[1, 1, 30, 30], [600, 400, 630, 430], [300, 1, 330, 30]]
    extra = Cells(boxes=boxes, labels=[1] * 3, scores=[0.8, 0.7, 0.1])
    by_id["BloodImage_00015"] = replace(more, cells=Cells.concatenate([more.cells, extra]))  # the last is below 0.5
    predictions = Dataset(truth.classes, list(by_id.values()), name="edited truth")
    figures = evaluate_datasets(predictions, truth, count_threshold=0.5) | {"model": "edited", "score_threshold": 0.5}

    folder = tmp_path / "report"
    page_path = write_report(figures, predictions, truth, folder)
    assert page_path == folder / "report.html"
    assert sorted(path.name for path in folder.iterdir()) == [
        "count_errors.png",
        "metrics.json",
        "pr_curves.png",
        "report.html",
    ]
    assert json.loads((folder / "metrics.json").read_text()) == json_safe(figures)
    page = page_path.read_text()
    assert RESEARCH_ONLY in page
    assert all(name in page for name in ("matched", "missed", "false", "mAP@0.5", "AP50", "count MAE", "Platelets"))
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert captions == [
        "BloodImage_00011: F1 0.848, matched 14, missed 5, false 0",  # 19 true boxes, the first 5 not predicted
        "BloodImage_00015: F1 0.941, matched 16, missed 0, false 2",
    ]
    assert embedded_pictures(page) == 2 + 2  # PR curves, counts, two gallery images

    write_report(figures, predictions, truth, folder, worst=1)
    assert len(re.findall(r"<figcaption>", (folder / "report.html").read_text())) == 1
    assert not list(folder.glob(".*.tmp"))


def test_report_on_points_needs_the_radius(tmp_path: Path) -> None:
    predictions, truth = points_datasets(grey_image(tmp_path / "x.png"))
    figures = evaluate_datasets(predictions, truth, radius=5)
    page = write_report(figures, predictions, truth, tmp_path / "report", radius=5).read_text()
    assert "within the matching radius" in page and "5 px" in page
    assert embedded_pictures(page) == 1 + 1  # counts, one gallery image; no PR curves for points
    assert not (tmp_path / "report" / "pr_curves.png").exists()
    with pytest.raises(CytolensError, match="radius"):
        write_report(figures, predictions, truth, tmp_path / "again")


def test_report_without_errors_says_so(tmp_path: Path) -> None:
    truth = read_dataset(examples_path(), "voc")
    page = write_report(evaluate_datasets(truth, truth), truth, truth, tmp_path).read_text()
    assert "No image has missed or false cells." in page
    assert "<figcaption>" not in page
