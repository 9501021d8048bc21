"""Fast-mode heads: trained on the cached features of a few real crops, balanced, early-stopped, in place."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import dataset_path
from cytolens.data.patches import Patch
from cytolens.data.patches import test_time_views as fixed_views
from cytolens.io.folders import read
from cytolens.models.classifier import PatchClassifier, lite_classifier
from cytolens.training.fast_heads import (
    HeadSettings,
    head_probabilities,
    patch_targets,
    train_head,
)
from cytolens.training.feature_cache import patch_features

PER_CLASS = 6


@pytest.fixture(scope="module")
def crops():
    """ImageNet Lite0 features (64-pixel input, 2 views) of the first crops of each erythrocytesIDB class."""
    data = read(dataset_path("erythrocytesidb"))
    by_class = [[image for image in data.images if image.image_labels == [label]] for label in range(3)]
    images = [image for members in by_class for image in members[:PER_CLASS]]
    patches = [
        Patch(index, (image.width / 2, image.height / 2), float(image.width), (image.image_labels[0],), 0)
        for index, image in enumerate(images)
    ]
    torch.manual_seed(0)
    model = lite_classifier(3)
    features = patch_features(model, [image.path for image in images], patches, fixed_views(2), 64)
    return model, features, patches


def test_head_training_lowers_the_loss_and_leaves_the_body(crops):
    model, features, patches = crops
    targets = patch_targets(patches, 3, multi_label=False)
    body = {key: value.clone() for key, value in model.body.state_dict().items()}
    head = {key: value.clone() for key, value in model.out.state_dict().items()}
    fit = train_head(model, features, targets, HeadSettings(epochs=30, batch_size=None))
    assert fit.losses[-1] < 0.5 * fit.losses[0]
    assert fit.best_epoch == 29 and fit.val_losses == []
    assert all(torch.equal(value, model.body.state_dict()[key]) for key, value in body.items())
    assert not torch.equal(head["1.weight"], model.out.state_dict()["1.weight"])
    predicted = head_probabilities(model, features).argmax(axis=1)
    assert (predicted == targets).mean() > 0.9


def test_early_stopping_keeps_the_best_head(crops):
    model, features, patches = crops
    targets = patch_targets(patches, 3, multi_label=False)
    train, val = np.arange(len(patches)) % 3 != 0, np.arange(len(patches)) % 3 == 0
    settings = HeadSettings(epochs=60, lr=3e-3, batch_size=8, patience=3)
    fit = train_head(model, features[train], targets[train], settings, features[val], targets[val])
    assert len(fit.val_losses) == len(fit.losses) <= 60
    assert fit.best_epoch == int(np.argmin(fit.val_losses))
    if len(fit.losses) < 60:
        assert len(fit.losses) == fit.best_epoch + 1 + settings.patience


def test_multi_label_head_learns_the_sets_of_types():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 32)).astype(np.float32) * 3
    labels = [(0,), (1,), (2,), (0, 1), (1, 2), (0, 2), ()] * 6
    patches = [Patch(0, (0.0, 0.0), 10.0, label) for label in labels]
    targets = patch_targets(patches, 3, multi_label=True)
    features = (targets @ centres)[:, None, :] + rng.normal(size=(len(labels), 2, 32)).astype(np.float32) * 0.3
    torch.manual_seed(0)
    model = PatchClassifier(torch.nn.Identity(), 32, 3, 16, 0.1, True, (0.0,) * 3, (1.0,) * 3)
    fit = train_head(model, np.maximum(features, 0), targets, HeadSettings(epochs=200, lr=1e-2, batch_size=None))
    assert fit.losses[-1] < 0.3 * fit.losses[0]
    called = head_probabilities(model, np.maximum(features, 0)) >= 0.5
    assert (called == targets.astype(bool)).all(axis=1).mean() > 0.9


@pytest.mark.parametrize("balance", ["weights", "sampling"])
def test_balanced_heads_train(crops, balance):  # the weights themselves: tests/test_class_balance.py
    model, features, patches = crops
    fit = train_head(model, features, patch_targets(patches, 3, False), HeadSettings(epochs=3, balance=balance))
    assert len(fit.losses) == 3


def test_single_label_targets_refuse_patches_of_several_types():
    with pytest.raises(ValueError, match="exactly one type"):
        patch_targets([Patch(0, (1.0, 1.0), 4.0, (0, 2), 2)], 3, multi_label=False)
    with pytest.raises(ValueError, match="targets must have shape"):
        model = lite_classifier(3, weights=None)
        train_head(model, np.zeros((2, 1, model.feature_dim), np.float32), np.zeros(3, np.int64))
