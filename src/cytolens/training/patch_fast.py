"""The fast mode of the patches task (``patches.fast``): the classifier's head trained on cached body features.

Instead of Lightning's loop, :func:`fit_head` computes the body's pooled features of every training patch
under the section's ``fast_views`` fixed views and of every validation patch under its test-time ``views``
(:func:`~cytolens.training.feature_cache.patch_features`, kept in a
:class:`~cytolens.training.feature_cache.FeatureCache` so that a second run with the same body and images
computes nothing), trains the head in place on them (:func:`~cytolens.training.fast_heads.train_head`) and
measures the validation patches, their probabilities averaged over the views, with the same figures as a
fine-tuning run (:meth:`~cytolens.training.patch_module.PatchModule.validation_figures`, per-type thresholds
tuned for a multi-label model). The model then saves as any other ``model.pt``.
"""

from __future__ import annotations

import logging

import numpy as np

from cytolens.data.annotations import Dataset
from cytolens.data.patches import test_time_views
from cytolens.training.fast_heads import HeadSettings, head_probabilities, patch_targets, train_head
from cytolens.training.feature_cache import FeatureCache, patch_features
from cytolens.training.patch_data import patch_geometry, recipe_patches
from cytolens.training.patch_module import PatchModule
from cytolens.training.recipe import Recipe
from cytolens.training.stages import InputSize

log = logging.getLogger(__name__)


def fit_head(
    module: PatchModule,
    recipe: Recipe,
    train_data: Dataset,
    val_data: Dataset | None,
    input_size: InputSize,
    progress: bool = False,
) -> dict[str, float]:
    """Train ``module``'s model's head on cached features of the recipe's patches, in place.

    Args:
        module: The patch module (its model is trained; its thresholds are tuned on validation).
        recipe: The recipe: its ``patches`` section (``fast_views``, ``views``, ``balanced``...) and its epochs,
            ``lr``, ``weight_decay``, ``batch_size``, ``patience`` and ``seed`` for the head.
        train_data: The training images.
        val_data: The validation images (``None``: no validation, no early stop).
        input_size: The network's input size (its final size is used).
        progress: Show progress bars while features are computed.

    Returns:
        The validation figures by name (``val/...``, as a fine-tuning run logs them) and ``epoch``, the epoch
        whose head was kept; empty without validation patches.

    """
    settings, model = recipe.patches, module.model
    shift = patch_geometry(train_data, settings)[0].shift
    cache, size, classes = FeatureCache(), input_size.final, len(train_data.classes)

    def features(data: Dataset, train: bool, views: int) -> tuple[np.ndarray, np.ndarray]:
        patches = recipe_patches(data, settings, train)
        paths = [image.path for image in data]
        found = patch_features(model, paths, patches, test_time_views(views, shift), size, cache,
                               show_progress=progress)
        return found, patch_targets(patches, classes, settings.multi_label)

    train_features, train_targets = features(train_data, True, settings.fast_views)
    val_features = val_targets = None
    if val_data is not None and len(val_data):
        val_features, val_targets = features(val_data, False, settings.views)
        if not len(val_features):
            val_features = val_targets = None
    head = HeadSettings(
        epochs=recipe.epochs,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        batch_size=recipe.batch_size,
        balance="weights" if settings.balanced else "none",
        patience=recipe.patience or recipe.epochs,
        seed=recipe.seed,
    )
    fit = train_head(model, train_features, train_targets, head, val_features, val_targets)
    log.info("head trained in %.1f s (%d epochs, kept epoch %d)", fit.seconds, len(fit.losses), fit.best_epoch + 1)
    if val_features is None:
        return {}
    figures = module.validation_figures(val_targets, head_probabilities(model, val_features))
    return {**figures, "epoch": fit.best_epoch}
