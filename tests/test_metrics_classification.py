import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    hamming_loss,
    recall_score,
    roc_auc_score,
)

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.metrics.classification import (
    aggregate_folds,
    classification_metrics,
    image_classification_metrics,
    multilabel_metrics,
)


def softmax(logits):
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_single_label_agrees_with_scikit_learn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 80)
    y_score = softmax(rng.normal(size=(80, 4)) + 1.5 * np.eye(4)[y_true])
    y_pred = y_score.argmax(axis=1)
    result = classification_metrics(y_true, y_score, ["a", "b", "c", "d"])
    assert result["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert result["auc"] == pytest.approx(roc_auc_score(y_true, y_score, multi_class="ovr", average="macro"))
    assert result["sensitivity"] == pytest.approx(recall_score(y_true, y_pred, average="macro"))
    assert result["f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert result["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    confusion = confusion_matrix(y_true, y_pred)
    assert result["confusion"] == confusion.tolist()
    fp = confusion.sum(axis=0) - np.diag(confusion)
    tn = confusion.sum() - confusion.sum(axis=0) - confusion.sum(axis=1) + np.diag(confusion)
    specificity = tn / (tn + fp)
    assert result["specificity"] == pytest.approx(specificity.mean())
    s, sp = result["sensitivity"], result["specificity"]
    assert result["h_mean"] == pytest.approx(2 * s * sp / (s + sp))
    per_auc = roc_auc_score(np.eye(4)[y_true], y_score, average=None)
    for k, name in enumerate("abcd"):
        figures = result["per_class"][name]
        assert figures["auc"] == pytest.approx(per_auc[k])
        assert figures["specificity"] == pytest.approx(specificity[k])
        assert figures["support"] == int((y_true == k).sum())


def test_binary_abnormal_present():
    y_true = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    p_abnormal = np.array([0.1, 0.6, 0.2, 0.8, 0.7, 0.4, 0.9, 0.3])
    result = classification_metrics(y_true, np.column_stack([1 - p_abnormal, p_abnormal]), ["normal", "abnormal"])
    assert result["auc"] == pytest.approx(roc_auc_score(y_true, p_abnormal))
    # Predicted abnormal: 1, 3, 4, 6 -> TP 3, FN 1, TN 3, FP 1.
    assert result["per_class"]["abnormal"]["sensitivity"] == pytest.approx(0.75)
    assert result["per_class"]["abnormal"]["specificity"] == pytest.approx(0.75)
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["confusion"] == [[3, 1], [1, 3]]


def test_absent_class_figures_are_none_and_left_out_of_means():
    y_true = np.array([0, 0, 1, 1])
    y_score = np.array([[0.9, 0.1, 0], [0.6, 0.4, 0], [0.2, 0.8, 0], [0.7, 0.3, 0]])
    result = classification_metrics(y_true, y_score, ["a", "b", "c"])
    assert result["per_class"]["c"] == {"auc": None, "sensitivity": None, "specificity": 1.0, "f1": None, "support": 0}
    assert result["sensitivity"] == pytest.approx((1 + 0.5) / 2)
    assert result["f1"] == pytest.approx(f1_score(y_true, y_score.argmax(1), average="macro"))
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(y_true, y_score, ["a", "b"])
    with pytest.raises(ValueError, match="labels"):
        classification_metrics(np.array([0, 0, 1, 3]), y_score, ["a", "b", "c"])


def test_multilabel_agrees_with_scikit_learn():
    rng = np.random.default_rng(2)
    y_true = (rng.random((60, 3)) < 0.4).astype(int)
    y_score = np.clip(0.35 * y_true + rng.random((60, 3)) * 0.7, 0, 1)
    y_pred = (y_score >= 0.5).astype(int)
    result = multilabel_metrics(y_true, y_score, ["x", "y", "z"])
    assert result["exact_match"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert result["accuracy"] == pytest.approx(1 - hamming_loss(y_true, y_pred))
    assert result["auc"] == pytest.approx(roc_auc_score(y_true, y_score, average="macro"))
    assert result["f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert result["sensitivity"] == pytest.approx(recall_score(y_true, y_pred, average="macro"))
    per_f1 = f1_score(y_true, y_pred, average=None)
    for k, name in enumerate("xyz"):
        assert result["per_class"][name]["f1"] == pytest.approx(per_f1[k])
        assert result["per_class"][name]["support"] == int(y_true[:, k].sum())
    assert multilabel_metrics(y_true, y_score, ["x", "y", "z"], threshold=0.0)["per_class"]["x"]["sensitivity"] == 1.0


def test_image_classification_from_datasets_maps_classes_by_name():
    def im(image_id, labels=(), scores=None):
        return AnnotatedImage(f"{image_id}.png", 10, 10, image_id, image_labels=list(labels), image_scores=scores)

    truth = Dataset(["normal", "abnormal"], [im("1", [0]), im("2", [1]), im("3", [1]), im("4", [0])])
    # Scores in prediction order (abnormal, normal); image 4 has no prediction and scores 0 -> class 0.
    pred = Dataset(
        ["abnormal", "normal"], [im("1", scores=[0.2, 0.8]), im("2", scores=[0.9, 0.1]), im("3", scores=[0.4, 0.6])]
    )
    result = image_classification_metrics(pred, truth)
    assert result["confusion"] == [[2, 0], [1, 1]]
    multi = Dataset(["p", "q"], [im("1", [0, 1]), im("2", []), im("3", [1])])
    pred = Dataset(["q", "p"], [im("1", scores=[0.9, 0.8]), im("2", scores=[0.1, 0.2]), im("3", scores=[0.7, 0.6])])
    result = image_classification_metrics(pred, multi)
    assert result["exact_match"] == pytest.approx(2 / 3)
    assert result["per_class"]["p"]["sensitivity"] == 1.0 and result["per_class"]["p"]["specificity"] == 0.5


def test_aggregate_folds():
    folds = [
        {"accuracy": 0.8, "auc": None, "n": 10, "confusion": [[1]], "per_class": {"a": {"f1": 0.5}}},
        {"accuracy": 0.9, "auc": 0.7, "n": 12, "confusion": [[2]], "per_class": {"a": {"f1": math.nan}}},
        {"accuracy": 0.7, "auc": 0.9, "n": 14, "confusion": [[3]], "per_class": {"a": {"f1": 0.7}, "b": {"f1": 1}}},
    ]
    result = aggregate_folds(folds)
    assert result["accuracy"] == {"mean": pytest.approx(0.8), "std": pytest.approx(np.std([0.8, 0.9, 0.7], ddof=1))}
    assert result["auc"] == {"mean": pytest.approx(0.8), "std": pytest.approx(np.std([0.7, 0.9], ddof=1))}
    assert result["n"] == {"mean": 12.0, "std": 2.0}
    assert "confusion" not in result
    assert result["per_class"]["a"]["f1"]["mean"] == pytest.approx(0.6)
    assert result["per_class"]["b"]["f1"] == {"mean": 1.0, "std": None}
    assert aggregate_folds([{"auc": None}]) == {"auc": {"mean": None, "std": None}}
