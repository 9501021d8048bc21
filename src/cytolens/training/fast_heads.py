"""The fast mode: a patch classifier's head trained on cached deep features, in seconds.

The body stays as it is (ImageNet, or any other); its pooled features of every training patch under every
view come from :func:`cytolens.training.feature_cache.patch_features`. :func:`train_head` then trains the
head (``hidden`` and ``out`` of :class:`~cytolens.models.classifier.PatchClassifier`) on them with AdamW,
each view of a patch one training sample: softmax cross-entropy for a single-label model, one sigmoid
binary cross-entropy per type for a multi-label one. Rare types count as much as common ones, by weights
on the loss or by sampling. The head is trained in place, so the model saves as any other ``model.pt``.
:func:`head_probabilities` is test-time aggregation on cached features: each patch's probabilities are the
mean of those of its views.

Typical use (``train.py``'s ``patches.fast``)::

    patches = dataset_patches(data.images, side, pad)
    views = test_time_views(8)
    features = patch_features(model, [image.path for image in data], patches, views, size, FeatureCache())
    fit = train_head(model, features, patch_targets(patches, len(data.classes), model.multi_label))
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from cytolens.data.patches import Patch
from cytolens.models.classifier import PatchClassifier
from cytolens.training.class_balance import balanced_weights


@dataclass(frozen=True)
class HeadSettings:
    """How :func:`train_head` trains.

    Attributes:
        epochs: Passes over the training samples (every view of every patch), at most.
        lr: AdamW learning rate (cosine decay to zero over ``epochs``).
        weight_decay: AdamW weight decay.
        batch_size: Samples per step (``None``: the whole set in one step).
        balance: ``weights`` (each sample's loss weighted by the inverse frequency of its type, a multi-label
            patch's rarest: :func:`~cytolens.training.class_balance.balanced_weights`), ``sampling`` (samples drawn
            with those probabilities) or ``none``.
        patience: With validation features, stop after this many epochs without a lower validation loss and
            keep the head of the best epoch.
        seed: Seed of the shuffling, sampling and dropout.

    """

    epochs: int = 40
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int | None = 256
    balance: Literal["weights", "sampling", "none"] = "weights"
    patience: int = 8
    seed: int = 0


@dataclass(frozen=True)
class HeadFit:
    """What :func:`train_head` did.

    Attributes:
        losses: Mean training loss of each epoch.
        val_losses: Validation loss after each epoch (empty without validation features).
        best_epoch: The epoch whose head was kept (0-based; the last without validation).
        seconds: Wall time.

    """

    losses: list[float]
    val_losses: list[float] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0


def patch_targets(patches: Sequence[Patch], num_classes: int, multi_label: bool) -> np.ndarray:
    """Training targets of patches: ``(P,)`` class indices (each patch's single type), or ``(P, C)`` 0/1
    type indicators for a multi-label head.

    Raises:
        ValueError: If a single-label target is asked for a patch holding several types.

    """
    if multi_label:
        targets = np.zeros((len(patches), num_classes), dtype=np.float32)
        for row, patch in enumerate(patches):
            targets[row, list(patch.labels)] = 1
        return targets
    if any(len(patch.labels) != 1 for patch in patches):
        raise ValueError("a single-label head needs patches of exactly one type each")
    return np.array([patch.labels[0] for patch in patches], dtype=np.int64)


def _label_sets(targets: np.ndarray) -> list[tuple[int, ...]]:
    """Each sample's types, from :func:`patch_targets`' class indices or 0/1 type indicators."""
    if targets.ndim == 2:
        return [tuple(np.flatnonzero(row).tolist()) for row in targets]
    return [(int(label),) for label in targets]


def _losses(model: PatchClassifier, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample loss of the head on ``(N, F)`` features."""
    logits = model.head(features)
    if model.multi_label:
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=1)
    return F.cross_entropy(logits, targets, reduction="none")


def _samples(features: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> tuple[torch.Tensor, ...]:
    """Every view of every patch as one sample: ``(P * V, F)`` features, their targets and weights."""
    views = features.shape[1]
    return (
        torch.from_numpy(features.reshape(-1, features.shape[-1])),
        torch.from_numpy(np.repeat(targets, views, axis=0)),
        torch.from_numpy(np.repeat(weights, views).astype(np.float32)),
    )


def _weighted_loss(model: PatchClassifier, samples: tuple[torch.Tensor, ...], chunk: int = 8192) -> float:
    """Mean weighted loss of the head over ``samples``, in eval mode."""
    features, targets, weights = samples
    with torch.inference_mode():
        total = sum(
            float((_losses(model, features[i : i + chunk], targets[i : i + chunk]) * weights[i : i + chunk]).sum())
            for i in range(0, len(features), chunk)
        )
    return total / float(weights.sum())


def train_head(
    model: PatchClassifier,
    features: np.ndarray,
    targets: np.ndarray,
    settings: HeadSettings = HeadSettings(),
    val_features: np.ndarray | None = None,
    val_targets: np.ndarray | None = None,
) -> HeadFit:
    """Train ``model``'s head in place on cached features.

    Args:
        model: The classifier; only its head (``hidden``, ``out``) changes. Its body is not run.
        features: ``(P, V, F)`` features of ``P`` patches under ``V`` views (each view one sample).
        targets: From :func:`patch_targets`: ``(P,)`` class indices, or ``(P, C)`` 0/1 for a multi-label model.
        settings: Epochs, learning rate, batch size, balancing, early stopping.
        val_features: ``(P', V', F)`` validation features, for early stopping (with ``val_targets``).
        val_targets: Their targets.

    Returns:
        The losses per epoch, the epoch kept and the wall time. The model is left in the mode it was in.

    Raises:
        ValueError: If the shapes disagree with each other or with the model.

    """
    start = time.perf_counter()
    training = model.training
    num_classes = model.out[-1].out_features
    _check(model, features, targets, num_classes)
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)  # dropout
    balanced = settings.balance != "none"
    weights = balanced_weights(_label_sets(targets)) if balanced else np.ones(len(targets))
    samples = _samples(features, targets, weights)
    validation = None
    if val_features is not None and val_targets is not None:
        _check(model, val_features, val_targets, num_classes)
        val_weights = balanced_weights(_label_sets(val_targets)) if balanced else np.ones(len(val_targets))
        validation = _samples(val_features, val_targets, val_weights)
    count = len(samples[0])
    batch = settings.batch_size or count
    steps_per_epoch = math.ceil(count / batch)
    parameters = [*model.hidden.parameters(), *model.out.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.epochs * steps_per_epoch)
    losses: list[float] = []
    val_losses: list[float] = []
    best = (math.inf, -1, None)
    for epoch in range(settings.epochs):
        model.hidden.train()
        model.out.train()
        if settings.balance == "sampling":
            order = torch.multinomial(samples[2], count, replacement=True, generator=generator)
        else:
            order = torch.randperm(count, generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            index = order[step * batch : (step + 1) * batch]
            loss_each = _losses(model, samples[0][index], samples[1][index])
            loss = loss_each.mean() if settings.balance == "sampling" else (loss_each * samples[2][index]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        losses.append(total / count)
        model.eval()
        if validation is not None:
            val_losses.append(_weighted_loss(model, validation))
            if val_losses[-1] < best[0]:
                best = (val_losses[-1], epoch, copy.deepcopy([model.hidden.state_dict(), model.out.state_dict()]))
            elif epoch - best[1] >= settings.patience:
                break
    model.train(training)
    if best[2] is not None:
        model.hidden.load_state_dict(best[2][0])
        model.out.load_state_dict(best[2][1])
    best_epoch = best[1] if validation is not None else len(losses) - 1
    return HeadFit(losses, val_losses, best_epoch, time.perf_counter() - start)


def _check(model: PatchClassifier, features: np.ndarray, targets: np.ndarray, num_classes: int) -> None:
    if features.ndim != 3 or features.shape[2] != model.feature_dim:
        raise ValueError(f"features must be (patches, views, {model.feature_dim}), got {features.shape}")
    expected = (len(features), num_classes) if model.multi_label else (len(features),)
    if targets.shape != expected:
        raise ValueError(f"targets must have shape {expected}, got {targets.shape}")


def head_probabilities(model: PatchClassifier, features: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Test-time aggregation on cached features: ``(P, C)`` probabilities, each patch's mean over its views.

    Args:
        model: The classifier (its head and :meth:`~cytolens.models.classifier.PatchClassifier.probabilities`).
        features: ``(P, V, F)`` features of ``P`` patches under ``V`` views.
        chunk: Samples per forward pass.

    """
    patches, views, width = features.shape
    flat = torch.from_numpy(np.ascontiguousarray(features.reshape(-1, width), dtype=np.float32))
    training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            parts = [model.probabilities(model.head(flat[i : i + chunk])) for i in range(0, len(flat), chunk)]
    finally:
        model.train(training)
    probabilities = torch.cat(parts).numpy() if parts else np.zeros((0, model.out[-1].out_features), np.float32)
    return probabilities.reshape(patches, views, -1).mean(axis=1)
