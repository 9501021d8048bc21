"""Screeners (issue 11): fitting on probability tables, image features, storage without pickle, refusals."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from cytolens.data.annotations import AnnotatedImage
from cytolens.data.cells import UNCLASSIFIED, Cells
from cytolens.errors import CytolensError, ModelError
from cytolens.models.screening import Screener, feature_names, image_features, read_screener, save_screener
from cytolens.training.screening import abnormal_types, fit_screener, holds_abnormal

CLASSES = ["normal", "spiky", "pale"]


def toy_table(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-type probabilities of ``rows`` patches and their truth: abnormal when a type other than ``normal`` leads."""
    probabilities = rng.dirichlet([1.0, 1.0, 1.0], size=rows)
    return probabilities, probabilities.argmax(axis=1) != 0


@pytest.fixture(scope="module")
def screener() -> Screener:
    features, truth = toy_table(np.random.default_rng(0), 400)
    return fit_screener(
        features, truth, level="patches", classes=CLASSES, abnormal=["spiky", "pale"], provenance={"data": "toy"}
    )


def test_a_screener_fitted_on_a_toy_probability_table_tells_held_out_patches_apart(screener: Screener) -> None:
    features, truth = toy_table(np.random.default_rng(1), 300)
    probabilities = screener.probabilities(features)
    assert probabilities.shape == (300,)
    assert roc_auc_score(truth, probabilities) > 0.97
    assert ((probabilities >= screener.threshold) == truth).mean() > 0.9
    assert screener.provenance["data"] == "toy" and screener.provenance["samples"] == 400
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        screener.probabilities(np.zeros((2, 4)))


def test_fit_refuses_a_table_without_normal_samples_or_of_the_wrong_width() -> None:
    with pytest.raises(CytolensError, match="needs normal and abnormal samples: 3 of 3"):
        fit_screener(np.ones((3, 3)), np.ones(3), level="patches", classes=CLASSES, abnormal=["pale"])
    with pytest.raises(CytolensError, match=r"must be \(2, 7\)"):
        fit_screener(np.ones((2, 3)), [0, 1], level="images", classes=CLASSES, abnormal=["pale"])


def test_image_features_count_types_and_take_their_highest_probability() -> None:
    cells = Cells(
        centres=[[1, 1], [2, 2], [3, 3], [4, 4]],
        labels=[0, 2, 2, UNCLASSIFIED],
        probabilities=[[0.9, 0.1, 0.0], [0.2, 0.1, 0.7], [0.1, 0.3, 0.6], [0.4, 0.35, 0.25]],
    )
    assert image_features(cells, 3).tolist() == [1, 0, 2, 0.9, 0.35, 0.7, 4]
    assert feature_names("images", CLASSES) == [
        "count_normal", "count_spiky", "count_pale", "max_p_normal", "max_p_spiky", "max_p_pale", "cells"
    ]  # fmt: skip
    boxes = Cells(boxes=[[0, 0, 4, 4], [5, 5, 9, 9], [1, 1, 3, 3]], labels=[1, 1, 0], scores=[0.4, 0.8, 0.3])
    assert image_features(boxes, 3).tolist() == [1, 2, 0, 0.3, 0.8, 0.0, 3]  # no probabilities: the scores
    assert image_features(Cells(), 3).tolist() == [0.0] * 7


def test_abnormal_types_and_image_truth() -> None:
    assert abnormal_types(CLASSES, normal=["normal"]) == ("spiky", "pale")
    assert abnormal_types(CLASSES, abnormal=["pale"]) == ("pale",)
    with pytest.raises(CytolensError, match="--abnormal: 'round' not among the classes"):
        abnormal_types(CLASSES, abnormal=["round"])
    with pytest.raises(CytolensError, match="not both"):
        abnormal_types(CLASSES, abnormal=["pale"], normal=["normal"])
    with pytest.raises(CytolensError, match="some classes must count as abnormal and some as normal"):
        abnormal_types(CLASSES, normal=CLASSES)
    image = AnnotatedImage(Path("a.png"), 10, 10, cells=Cells(centres=[[1, 1], [2, 2]], labels=[0, UNCLASSIFIED]))
    assert not holds_abnormal(image, CLASSES, ["pale"])
    assert holds_abnormal(AnnotatedImage(Path("b.png"), 10, 10, image_labels=[2]), CLASSES, ["pale"])


def test_a_screener_round_trips_through_its_file(screener: Screener, tmp_path: Path) -> None:
    path = tmp_path / "screener.skops"
    save_screener(path, screener)
    read = read_screener(path)
    assert read.metadata() == screener.metadata()
    features, _ = toy_table(np.random.default_rng(2), 50)
    np.testing.assert_array_equal(read.probabilities(features), screener.probabilities(features))
    with zipfile.ZipFile(path) as archive:  # no pickle inside: skops' schema and NumPy arrays
        assert all(name == "schema.json" or name.endswith(".npy") for name in archive.namelist())


def crafted(path: Path, estimator: object) -> Path:
    """A file laid out as a screener file whose estimator is ``estimator``."""
    skops.io.dump({"cytolens_screener": 1, "metadata": "{}", "estimator": estimator}, path)
    return path


@pytest.mark.parametrize(
    ("estimator", "named"),
    [
        (print, "builtins.print"),  # a function: skops itself does not trust it
        (LogisticRegression(), "sklearn.linear_model._logistic.LogisticRegression"),  # skops trusts it; we do not
    ],
)
def test_a_file_holding_a_type_off_the_list_is_refused_before_anything_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, estimator: object, named: str
) -> None:
    path = crafted(tmp_path / "hostile.skops", estimator)

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("skops.io.load was called")

    monkeypatch.setattr(skops.io, "load", never)
    with pytest.raises(ModelError) as refused:
        read_screener(path)
    message = str(refused.value)
    assert message == f"{path}: refused: it holds types a cytolens screener does not ({named})"


def test_damaged_missing_and_foreign_files_are_refused_in_one_line(screener: Screener, tmp_path: Path) -> None:
    good = tmp_path / "good.skops"
    save_screener(good, screener)
    truncated = tmp_path / "truncated.skops"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "text.skops"
    text.write_text("not a zip")
    other = tmp_path / "other.skops"
    skops.io.dump({"something": "else"}, other)
    bad_threshold = tmp_path / "threshold.skops"
    metadata = {**screener.metadata(), "threshold": 1.5}
    skops.io.dump({"cytolens_screener": 1, "metadata": json.dumps(metadata), "estimator": screener.estimator},
                  bad_threshold)  # fmt: skip
    expected = {
        truncated: "not a screener file (truncated, or not a skops archive",
        text: "not a screener file (truncated, or not a skops archive",
        tmp_path / "absent.skops": "screener file not found",
        other: "not a cytolens screener file (no cytolens_screener entry)",
        bad_threshold: "screener threshold must lie in [0.0, 1.0], not 1.5",
    }
    for path, problem in expected.items():
        with pytest.raises(ModelError) as refused:
            read_screener(path)
        message = str(refused.value)
        assert message.startswith(f"{path}: ") and problem in message, message
        assert "\n" not in message
