"""The contract every registered architecture keeps (timm's test_models.py style), parametrised over the registry.

Build, forward, backward with a gradient on every trainable parameter, ``blocks()`` covering every
parameter exactly once from input to output, and ``class_heads()`` naming exactly the tensors whose
shapes depend on the number of classes.
"""

from __future__ import annotations

import pytest
import torch

from cytolens.models.blocks import freeze_blocks
from cytolens.models.registry import architectures, build_architecture

pytestmark = pytest.mark.usefixtures("one_thread")

ARCHITECTURES = sorted(architectures())
SMALL = {"boxes": {"min_size": 96, "max_size": 128}, "points": {}, "patches": {}}
"""Builder arguments that keep each task's networks small enough for CI."""


def _build(name: str, num_classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_architecture(name, num_classes=num_classes, weights=None, **SMALL[architectures()[name].task])


def _training_loss(name: str, model: torch.nn.Module) -> torch.Tensor:
    """A loss that reaches every output of the network, computed in training mode."""
    model.train()
    task = architectures()[name].task
    if task == "boxes":
        boxes = torch.tensor([[10.0, 12.0, 40.0, 44.0], [50.0, 20.0, 70.0, 40.0], [60.0, 50.0, 90.0, 85.0]])
        target = {"boxes": boxes, "labels": torch.tensor([1, 2, 3])}
        return sum(model([torch.rand(3, 96, 128)], [target]).values())
    out = model(torch.rand(2, 3, 64, 64))
    if isinstance(out, torch.Tensor):  # patch classifiers: class logits
        return out.mean()
    return sum(value.float().mean() for value in out.values())


def test_every_task_has_architectures():
    assert {architecture.task for architecture in architectures().values()} >= {"boxes", "points", "patches"}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_backward_reaches_every_trainable_parameter(name):
    model = _build(name)
    loss = _training_loss(name, model)
    assert torch.isfinite(loss)
    loss.backward()
    missing = [key for key, parameter in model.named_parameters() if parameter.requires_grad and parameter.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_blocks_cover_every_parameter_once_and_freeze_in_order(name):
    model = _build(name)
    blocks = model.blocks()
    ids = [id(parameter) for _, block in blocks for parameter in block.parameters()]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    frozen = freeze_blocks(model, 2)
    assert frozen == [block_name for block_name, _ in blocks[:2]]
    assert all(not parameter.requires_grad for _, block in blocks[:2] for parameter in block.parameters())
    assert all(parameter.requires_grad for _, block in blocks[2:] for parameter in block.parameters())


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_class_heads_are_exactly_the_class_dependent_tensors(name):
    model = _build(name, 3)
    one, other = model.state_dict(), _build(name, 4).state_dict()
    changed = {key for key, value in one.items() if value.shape != other[key].shape}
    declared = {key for key in one if key.startswith(tuple(model.class_heads()))}
    assert changed and changed == declared
