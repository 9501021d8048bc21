"""The class head of a point FCN: a block (or a decoder) of its own, and a small class weight that leaves the shared
decoder to detection while the head's own parameters still learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cytolens.models.checkpoint import load_network, save_checkpoint
from cytolens.models.registry import build_architecture
from cytolens.training.point_module import PointModule
from cytolens.training.proximity import class_target, proximity_map

pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Two 64-pixel images with 6 random centres each, their proximity (d = 7) and class targets."""
    rng = np.random.default_rng(seed)
    proximity, classes = [], []
    for _ in range(2):
        centres, labels = rng.uniform(4, 60, (6, 2)), rng.integers(0, 3, 6)
        proximity.append(proximity_map(centres, (64, 64), d=7.0))
        classes.append(class_target(centres, labels, (64, 64), 7.0))
    return {
        "image": torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed)),
        "proximity": torch.from_numpy(np.stack(proximity)).float(),
        "known": torch.ones(2, 64, 64),
        "classes": torch.from_numpy(np.stack(classes)).long(),
    }


def _gradient_norms(module: PointModule, loss: torch.Tensor) -> dict[str, float]:
    """Gradient norms of ``loss`` over the shared decoder and over the class head's own parameters."""
    named = dict(module.model.named_parameters())
    parts = {
        "decoder": [p for n, p in named.items() if n.startswith(("decoder", "full", "context", "fuse", "stem"))],
        "class": [p for n, p in named.items() if n.startswith(("class_decoder", "class_block", "class_head"))],
    }
    norms = {}
    for name, parameters in parts.items():
        grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
        norms[name] = float(sum((g**2).sum() for g in grads if g is not None) ** 0.5)
    return norms


def test_small_class_weight_leaves_the_decoder_to_detection():
    torch.manual_seed(0)
    model = build_architecture("fcn-small", num_classes=3, weights=None, context_levels=1, class_channels=8)
    module = PointModule(model, ["a", "b", "c"], class_weight=3e-4)
    losses = module.losses(_batch())
    detection = _gradient_norms(module, losses["proximity"])
    classes = _gradient_norms(module, module.class_weight * losses["class"])
    assert classes["decoder"] < detection["decoder"]  # the class term does not steer the shared decoder
    assert classes["class"] > 0 and detection["class"] == 0  # the head's own parameters learn classes only
    heavy = _gradient_norms(module, 1.0 * losses["class"])
    assert heavy["decoder"] > classes["decoder"] * 1000  # the weight scales the decoder's share, linearly


def test_class_block_is_optional_and_round_trips(tmp_path):
    plain = build_architecture("fcn-small", num_classes=2, weights=None)
    assert not any(name.startswith("class_block") for name in plain.state_dict())  # old checkpoints still load
    torch.manual_seed(0)
    model = build_architecture("fcn-small", num_classes=2, weights=None, class_channels=8).eval()
    assert model.class_head.in_channels == 8
    meta = {"task": "points", "architecture": "fcn-small", "kwargs": {"class_channels": 8}, "classes": ["a", "b"]}
    save_checkpoint(tmp_path / "model.pt", model, meta)
    loaded, _ = load_network(tmp_path / "model.pt")
    images = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images)["logits"], model(images)["logits"])


def test_class_decoder_reads_the_encoder_not_the_detection_decoder(tmp_path):
    torch.manual_seed(0)
    model = build_architecture("fcn-small", num_classes=3, weights=None, class_channels=8, class_decoder=16)
    module = PointModule(model, ["a", "b", "c"], class_weight=1.0)
    losses = module.losses(_batch())
    classes = _gradient_norms(module, losses["class"])
    detection = _gradient_norms(module, losses["proximity"])
    assert classes["decoder"] == 0 and classes["class"] > 0  # no class gradient reaches detection's decoder
    assert detection["class"] == 0
    assert module.model.blocks()[-1][0] == "class_head"  # the whole class branch is the last block (freezing)
    last = {id(parameter) for parameter in module.model.blocks()[-1][1].parameters()}
    assert {id(parameter) for parameter in module.model.class_decoder.parameters()} <= last
    meta = {"task": "points", "architecture": "fcn-small", "kwargs": {"class_channels": 8, "class_decoder": 16},
            "classes": ["a", "b", "c"]}
    save_checkpoint(tmp_path / "model.pt", model.eval(), meta)
    loaded, _ = load_network(tmp_path / "model.pt")
    images = torch.rand(1, 3, 45, 70)  # not a multiple of the stride: logits are cropped back to the input
    with torch.no_grad():
        out = loaded(images)
        torch.testing.assert_close(out["logits"], model(images)["logits"])
    assert out["logits"].shape == (1, 3, 45, 70) and out["proximity"].shape == (1, 1, 45, 70)
