"""Model initialisation for training: ImageNet, random, or a base model (fine-tuning)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from torch import nn

from cytolens.errors import ModelError
from cytolens.models.checkpoint import build_described, read_card
from cytolens.models.registry import architectures, build_architecture, bundled_models, resolve_model

log = logging.getLogger(__name__)


def _task_of(architecture: str) -> str:
    return architectures()[architecture].task


def initial_model(
    init: str, architecture: str, classes: list[str], kwargs: dict[str, Any]
) -> tuple[nn.Module, str, dict[str, Any], dict[str, Any]]:
    """Build the model to train.

    Args:
        init: ``imagenet`` (pretrained backbone), ``none`` (random), a bundled model name or a checkpoint path.
            A base model's weights are loaded wherever their shapes fit; when its classes differ from
            ``classes``, the class-dependent layers (class heads) start fresh, even if their shapes fit.
        architecture: Registered architecture name (a base model's own architecture wins).
        classes: Class names of the training data.
        kwargs: Builder arguments; over a base model's own, these win (e.g. a larger ``detections_per_img``).

    Returns:
        The model, its architecture name and builder arguments, and a description of the initialisation
        for the checkpoint metadata.

    """
    if init in ("imagenet", "none"):
        model = build_architecture(architecture, len(classes), **kwargs, weights=None if init == "none" else "imagenet")
        return model, architecture, kwargs, {"init": init}
    path = resolve_model(init)
    card, state = read_card(path)
    if card.task != _task_of(architecture):
        raise ModelError(f"{path}: a {card.task} model cannot initialise a {_task_of(architecture)} model")
    card = replace(card, kwargs={**card.kwargs, **kwargs})
    model = build_described(path, card, len(classes))
    own = model.state_dict()
    same_classes = list(card.classes) == list(classes)
    # the class heads the architecture declares (tests/test_architecture_contract.py checks the declaration)
    class_dependent = set() if same_classes else {key for key in own if key.startswith(tuple(model.class_heads()))}
    fitting = {
        k: v.float() if v.is_floating_point() else v
        for k, v in state.items()
        if k in own and own[k].shape == v.shape and k not in class_dependent
    }
    model.load_state_dict(fitting, strict=False)
    fresh = sorted(set(own) - set(fitting))
    if fresh:
        log.warning("%s: %d tensors depend on the classes and start fresh (%s...)", path, len(fresh), fresh[0])
    name = init if init in bundled_models() else str(path)
    info = {"init": name, "base_classes": list(card.classes), "base_task": card.task}
    return model, card.architecture, dict(card.kwargs), info
