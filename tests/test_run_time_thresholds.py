"""Thresholds set at run time (issue 9): ``CellModel.with_thresholds`` and the threshold keywords of ``predict``.

A model with other thresholds shares the network (nothing is rebuilt, reloaded or written) and predicts
exactly what a checkpoint storing those thresholds predicts, with PyTorch and with ONNX Runtime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cytolens.errors import CytolensError
from cytolens.examples import path as examples_path
from cytolens.inference.model import load_model
from cytolens.io.images import read_image
from cytolens.models.card import BoxThresholds, PointThresholds
from cytolens.models.checkpoint import save_checkpoint
from cytolens.models.registry import build_architecture
from tiny_detector import KWARGS, tiny_detector

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [read_image(path) for path in sorted((examples_path() / "JPEGImages").glob("*.jpg"))[:2]]


@pytest.fixture(scope="module")
def boxes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny detector: stored score 0.3 (above every score it gives), NMS 0.6."""
    return tiny_detector(tmp_path_factory.mktemp("model") / "tiny.pt")


def cells(results: list) -> list[pd.DataFrame]:
    return [result.to_dataframe() for result in results]


def assert_same_cells(found: list, expected: list) -> None:
    for one, other in zip(cells(found), cells(expected), strict=True):
        pd.testing.assert_frame_equal(one, other)


def test_with_thresholds_shares_the_network_and_leaves_the_model_as_it_was(boxes):
    model = load_model(boxes, device="cpu", backend="torch")
    strict = model.with_thresholds(score={"WBC": 0.2}, nms=0.3)
    assert strict.network is model.network and strict.card.classes == model.card.classes
    assert strict.thresholds == BoxThresholds(score={"WBC": 0.2}, nms=0.3)
    assert model.thresholds == BoxThresholds(score=0.3, nms=0.6)
    assert strict.with_thresholds(nms=None).thresholds.nms == 0.6  # None: as the network is built
    tuned = model.with_thresholds(score=0.2, tuned_on="by hand")
    assert tuned.thresholds.tuned_on == "by hand" and strict.thresholds.tuned_on is None


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_nms_set_at_run_time_equals_a_network_built_with_it(boxes, images, tmp_path, monkeypatch, backend):
    if backend == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    monkeypatch.setenv("CYTOLENS_CACHE_DIR", str(tmp_path / "cache"))
    built = tiny_detector(tmp_path / "nms.pt", kwargs={**KWARGS, "nms_thresh": 0.3}, thresholds={"score": 0.3})
    expected = load_model(built, device="cpu", backend=backend).predict(images, score_threshold=0.0)
    model = load_model(boxes, device="cpu", backend=backend)
    assert model.backend == backend
    everything = model.predict(images, score_threshold=0.0)
    exports = sorted((tmp_path / "cache").glob("*.onnx"))
    found = model.predict(images, score_threshold=0.0, nms=0.3)
    assert_same_cells(found, expected)
    assert_same_cells(model.with_thresholds(nms=0.3).predict(images, score_threshold=0.0), expected)
    assert all(len(few) < len(many) for few, many in zip(cells(found), cells(everything), strict=True))
    assert_same_cells(model.predict(images, score_threshold=0.0), everything)  # the model itself is unchanged
    assert sorted((tmp_path / "cache").glob("*.onnx")) == exports  # nothing exported again


def test_score_thresholds_at_run_time_one_or_per_class(boxes, images, tmp_path):
    model = load_model(boxes, device="cpu", backend="torch")
    assert all(table.empty for table in cells(model.predict(images)))  # the stored 0.3 is above every score
    (table,) = cells(model.predict(images[:1], score=0.2))
    assert len(table) and (table["score"] >= 0.2).all()
    assert_same_cells(model.predict(images[:1], score=0.2), model.predict(images[:1], score_threshold=0.2))
    (per_class,) = cells(model.predict(images[:1], score={"RBC": 1.0, "WBC": 1.0}))  # Platelets: 0
    assert set(per_class["class"]) == {"Platelets"}
    stored = tiny_detector(tmp_path / "score.pt", score=0.2)
    expected = load_model(stored, device="cpu", backend="torch").predict(images[:1])
    assert_same_cells(model.predict(images[:1], score=0.2), expected)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["score.pt"]  # run-time thresholds write nothing


def test_point_thresholds_at_run_time_equal_stored_ones(images, tmp_path):
    torch.manual_seed(0)
    network = build_architecture("fcn-small", 2, weights=None)
    card = {"task": "points", "architecture": "fcn-small", "kwargs": {}, "classes": ["a", "b"]}
    save_checkpoint(tmp_path / "default.pt", network, card)
    stored = {"threshold_rel": 0.99, "threshold_abs": 0.0, "min_distance": 9}  # untrained: a flat map near 0.018
    save_checkpoint(tmp_path / "stored.pt", network, {**card, "thresholds": stored})
    model = load_model(tmp_path / "default.pt", device="cpu")
    assert model.thresholds == PointThresholds()
    expected = load_model(tmp_path / "stored.pt", device="cpu").predict(images)
    assert all(len(table) for table in cells(expected))
    assert_same_cells(model.with_thresholds(**stored).predict(images), expected)
    assert_same_cells(model.predict(images, **stored), expected)
    assert all(table.empty for table in cells(model.predict(images)))  # nothing above the default threshold_abs
    closer = model.predict(images, **{**stored, "min_distance": 3})
    assert all(len(many) > len(few) for many, few in zip(cells(closer), cells(expected), strict=True))


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"threshold_rel": 0.3}, "boxes models have no threshold 'threshold_rel' (they have: score, nms, tuned_on)"),
        ({"nms": 1.5}, "thresholds.nms must lie in [0.0, 1.0], not 1.5"),
        ({"score": "high"}, "thresholds.score must be a number, not 'high'"),
        ({"score": {"Neutrophil": 0.5}}, "thresholds.score names 'Neutrophil', not a class of the model"),
        ({"score": {"RBC": float("nan")}}, "thresholds.score['RBC'] must be a finite number, not nan"),
    ],
)
def test_bad_run_time_thresholds_are_one_line_errors(boxes, images, changes, problem):
    model = load_model(boxes, device="cpu", backend="torch")
    with pytest.raises(CytolensError) as error:
        model.with_thresholds(**changes)
    assert str(error.value).startswith(problem) and "\n" not in str(error.value)
    with pytest.raises(CytolensError, match="thresholds?"):
        model.predict(images[:1], **changes)
