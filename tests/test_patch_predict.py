"""Predicting with patch classifiers: crops classified whole, views averaged, cells of an image classified."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import cytolens
from conftest import dataset_path
from cytolens.data import patches
from cytolens.data.patches import View, crop_patch
from cytolens.errors import CytolensError
from cytolens.inference.model import CellModel
from cytolens.inference.predictors import PatchPredictor
from cytolens.io.images import read_image
from cytolens.models.checkpoint import save_checkpoint
from cytolens.models.registry import build_architecture
from tiny_detector import tiny_detector

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ["circular", "elongated", "other"]


def tiny_classifier(path: Path, multi_label: bool = False, **card: object) -> Path:
    """Write a seeded, untrained lite-classifier (32 px input, 4 test-time views) for erythrocytesIDB's classes."""
    torch.manual_seed(0)
    network = build_architecture("lite-classifier", len(CLASSES), weights=None, hidden=16, multi_label=multi_label)
    with torch.no_grad():  # spread the logits, so that views and cells give visibly different probabilities
        network.out[1].weight.mul_(20)
    base = {
        "task": "patches",
        "architecture": "lite-classifier",
        "kwargs": {"hidden": 16, "multi_label": multi_label},
        "classes": CLASSES,
        "input": {"size": [32, 32], "mpp": 0.1},
        "patch": {"side": 40, "views": 4},
    }
    save_checkpoint(path, network, {**base, **card})
    return path


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> CellModel:
    return cytolens.load_model(tiny_classifier(tmp_path_factory.mktemp("model") / "classifier.pt"), device="cpu")


@pytest.fixture(scope="module")
def crops() -> list[Path]:
    """Three real 80x80 erythrocytesIDB crops, one per class."""
    root = dataset_path("erythrocytesidb")
    return [root / name for name in ("circular/c0001.jpg", "elongated/e0001.jpg", "other/o0001.jpg")]


def _by_hand(network: torch.nn.Module, pixels: np.ndarray, views: list[View]) -> np.ndarray:
    """Each view's probabilities, the whole image squared and cut by crop_patch, through the network one by one."""
    height, width = pixels.shape[:2]
    rows = []
    for view in views:
        crop = crop_patch(pixels, (width / 2, height / 2), max(width, height), 32, view)
        tensor = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
        with torch.inference_mode():
            rows.append(torch.softmax(network(tensor), dim=1)[0].numpy())
    return np.stack(rows)


def test_a_crop_is_classified_whole_with_the_mean_of_its_views(classifier, crops):
    results = classifier.predict(crops, batch_size=2)
    assert [result.image_id for result in results] == ["c0001", "e0001", "o0001"]
    for result in results:
        by_hand = _by_hand(classifier.network, read_image(result.path), patches.test_time_views(4))
        assert len(result.cells) == 0 and result.classes == CLASSES
        np.testing.assert_allclose(result.image_scores, by_hand.mean(axis=0), atol=1e-5)
        assert result.image_labels == [int(np.argmax(result.image_scores))]
        assert np.ptp(by_hand, axis=0).max() > 1e-3  # the views differ (by far more than the tolerance)
    (raw,) = classifier.predictor.raw([read_image(crops[0])])
    assert raw["logits"].shape == raw["probabilities"].shape == (4, 3)
    np.testing.assert_allclose(raw["probabilities"].mean(axis=0), results[0].image_scores, atol=1e-6)


def test_views_are_set_at_run_time(classifier, crops):
    one = classifier.predict(crops[:1], views=1)[0]
    by_hand = _by_hand(classifier.network, read_image(crops[0]), [View()])
    np.testing.assert_allclose(one.image_scores, by_hand[0], atol=1e-5)
    assert classifier.with_views(8).card.patch.views == 8 and classifier.card.patch.views == 4
    with pytest.raises(CytolensError, match="test-time views must number 1 to 8, not 9"):
        classifier.with_views(9)
    with pytest.raises(CytolensError, match="views must lie in"):
        classifier.with_views(0)


def test_views_are_for_patch_classifiers_only(tmp_path):
    boxes = cytolens.load_model(tiny_detector(tmp_path / "tiny.pt"), device="cpu")
    with pytest.raises(CytolensError, match="test-time views are for patch classifiers, not boxes models"):
        boxes.with_views(2)


def test_a_multi_label_classifier_calls_every_type_over_its_threshold(tmp_path, crops):
    path = tiny_classifier(tmp_path / "multi.pt", multi_label=True, thresholds={"score": {"other": 0.0}})
    model = cytolens.load_model(path, device="cpu")
    assert isinstance(model.predictor, PatchPredictor) and model.predictor.multi_label
    for result in model.predict(crops):
        expected = [index for index, name in enumerate(CLASSES) if result.image_scores[index] >= 0.5 or name == "other"]
        assert result.image_labels == expected
    assert model.predictor.calls(np.array([[0.2, 0.7, 0.0]])) == [[1, 2]]


def test_cells_of_an_image_are_classified_in_batches(classifier, crops):
    pixels = np.concatenate([read_image(path) for path in crops], axis=1)  # three cells side by side, 80 px each
    centres, sides = [(40, 40), (120, 40), (200, 40)], [80, 80, 80]
    together = classifier.predictor.classify(pixels, centres, sides)
    one_by_one = classifier.predictor.classify(pixels, centres, sides, batch_size=1)
    assert together.shape == (3, 3)
    np.testing.assert_allclose(together.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    alone = [classifier.predict([read_image(path)])[0].image_scores for path in crops]
    # a cell's window is its crop (up to the neighbours' pixels that resampling reaches beyond the crop's edge)
    np.testing.assert_allclose(together, np.stack(alone), atol=2e-3)
    assert classifier.predictor.classify(pixels, np.zeros((0, 2)), []).shape == (0, 3)
