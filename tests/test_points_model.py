"""The point FCNs: registry, output shapes at any input size, blocks for freezing, checkpoints."""

from __future__ import annotations

import pytest
import torch

from cytolens.models.blocks import freeze_blocks
from cytolens.models.checkpoint import load_network, save_checkpoint
from cytolens.models.registry import architectures, build_architecture

pytestmark = pytest.mark.usefixtures("one_thread")


def test_point_architectures_are_registered():
    assert {"fcn-lite0", "fcn-small"} <= set(architectures("points"))


@pytest.mark.parametrize("name", ["fcn-small", "fcn-lite0"])
def test_outputs_at_input_resolution(name):
    torch.manual_seed(0)
    model = build_architecture(name, num_classes=4, weights=None).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 50, 77))
    assert out["proximity"].shape == (2, 1, 50, 77)
    assert out["logits"].shape == (2, 4, 50, 77)
    assert out["proximity"].min() >= 0 and out["proximity"].max() <= 1
    assert out["proximity"].median() < 0.1  # the prior bias: an untrained map starts near background, not 0.5


@pytest.mark.parametrize("name", ["fcn-small", "fcn-lite0"])
def test_blocks_cover_every_parameter_once_in_order(name):
    model = build_architecture(name, num_classes=3, weights=None)
    blocks = model.blocks()
    ids = [id(p) for _, block in blocks for p in block.parameters()]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    names = [block_name for block_name, _ in blocks]
    assert names[0].startswith("backbone.") and names[-2:] == ["proximity_head", "class_head"]
    encoder = sum(n.startswith("backbone.") for n in names)
    frozen = freeze_blocks(model, encoder)
    assert frozen == names[:encoder]
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters())


def test_lite0_size_and_imagenet_encoder():
    model = build_architecture("fcn-lite0", num_classes=13)
    count = sum(p.numel() for p in model.parameters())
    assert 3.0e6 < count < 3.6e6
    assert model.encoder.conv_stem.weight.abs().sum() > 0


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_architecture("fcn-small", num_classes=2, weights=None).eval()
    meta = {"task": "points", "architecture": "fcn-small", "kwargs": {}, "classes": ["a", "b"]}
    save_checkpoint(tmp_path / "model.pt", model, meta)
    loaded, card = load_network(tmp_path / "model.pt")
    images = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images)["proximity"], model(images)["proximity"])
    assert card.classes == ("a", "b") and card.task == "points"
