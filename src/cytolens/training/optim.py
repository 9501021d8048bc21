"""The optimiser of every task: AdamW on the model's blocks with warm-up then cosine decay, stepped per batch."""

from __future__ import annotations

import math

import torch
from torch import nn

PRETRAINED = ("backbone.", "body.")
"""Prefixes of the block names of pretrained parts: a detector's or point model's ``backbone``, a classifier's
``body``."""


def param_groups(
    model: nn.Module, lr: float, weight_decay: float, pretrained_lr_factor: float, pretrained_blocks: int
) -> list[dict]:
    """Optimizer groups: the first ``pretrained_blocks`` blocks at ``lr * pretrained_lr_factor``, the rest at ``lr``;
    no weight decay on norms and biases.
    """
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for index, (_, block) in enumerate(model.blocks()):
        for name, parameter in block.named_parameters():
            no_decay = parameter.ndim <= 1 or name.endswith(".bias")
            groups.setdefault((index < pretrained_blocks, no_decay), []).append(parameter)
    return [
        {
            "params": params,
            "lr": lr * (pretrained_lr_factor if pretrained else 1.0),
            "weight_decay": 0.0 if no_decay else weight_decay,
        }
        for (pretrained, no_decay), params in groups.items()
    ]


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to 1% at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))


def adamw_warmup_cosine(
    model: nn.Module, lr: float, weight_decay: float, pretrained_lr_factor: float, warmup_steps: int, total_steps: int
) -> dict:
    """Lightning's ``configure_optimizers`` answer for ``model``.

    The pretrained blocks (named :data:`PRETRAINED`: ``backbone.*``, a classifier's ``body.*``) learn at
    ``lr * pretrained_lr_factor``, the others at ``lr``; norms and biases get no weight decay; the rate warms up
    linearly over ``warmup_steps`` then follows a cosine to 1% at ``total_steps``.
    """
    pretrained = sum(name.startswith(PRETRAINED) for name, _ in model.blocks())
    optimizer = torch.optim.AdamW(param_groups(model, lr, weight_decay, pretrained_lr_factor, pretrained), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup_steps, total_steps)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
