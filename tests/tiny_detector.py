"""A tiny untrained FCOS checkpoint for prediction and evaluation tests (about a second to build)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cytolens.models.checkpoint import save_checkpoint
from cytolens.models.registry import build_architecture

CLASSES = ["WBC", "RBC", "Platelets"]
KWARGS = {"fpn_channels": 32, "head_convs": 1, "min_size": 192, "max_size": 256}


def tiny_detector(path: Path, score: float = 0.3, **meta: Any) -> Path:
    """Write a seeded, randomly initialised FCOS checkpoint for the BCCD classes to ``path``.

    Its boxes are cell-sized (a positive regression bias: random weights alone give many empty boxes)
    and its scores lie between about 0.12 and 0.25. ``score`` is the stored operating threshold;
    ``meta`` adds or replaces metadata entries.
    """
    torch.manual_seed(0)
    model = build_architecture("fcos", len(CLASSES), weights=None, **KWARGS)
    with torch.no_grad():
        model.head.regression_head.bbox_reg.bias.fill_(0.4)
        for parameter in model.head.classification_head.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    base = {
        "task": "boxes",
        "architecture": "fcos",
        "kwargs": KWARGS,
        "classes": CLASSES,
        "thresholds": {"score": score, "nms": 0.6},
    }
    save_checkpoint(path, model, {**base, **meta})
    return path
