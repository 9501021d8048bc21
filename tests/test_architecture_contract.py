"""The contract every registered architecture keeps (timm's test_models.py style), parametrised over the registry.

Build, forward, backward with a gradient on every trainable parameter, ``blocks()`` covering every
parameter exactly once from input to output, ``class_heads()`` naming exactly the tensors whose
shapes depend on the number of classes, and the Monte-Carlo dropout parts: a builder argument for the rate of
``head_dropouts()`` (off in eval mode), and a ``TRUNK`` that passes share without changing the outputs.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from cytolens.models.blocks import freeze_blocks
from cytolens.models.registry import Architecture, architectures, build_architecture

pytestmark = pytest.mark.usefixtures("one_thread")

VARIANTS = {"fcn-small:class-decoder": ("fcn-small", {"class_channels": 8, "class_decoder": 16})}
"""Builder options whose layout differs enough to keep the contract on their own: ``case: (architecture, kwargs)``."""
ARCHITECTURES = sorted([*architectures(), *VARIANTS])
SMALL = {"boxes": {"min_size": 96, "max_size": 128}, "points": {}, "patches": {}}
"""Builder arguments that keep each task's networks small enough for CI."""


def _architecture(case: str) -> Architecture:
    """The registered architecture of a case (an architecture's name, or a key of :data:`VARIANTS`)."""
    return architectures()[VARIANTS.get(case, (case, {}))[0]]


def _build(case: str, num_classes: int = 3, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    name, options = VARIANTS.get(case, (case, {}))
    small = SMALL[_architecture(name).task]
    return build_architecture(name, num_classes=num_classes, weights=None, **small, **options, **kwargs)


def _training_loss(name: str, model: torch.nn.Module) -> torch.Tensor:
    """A loss that reaches every output of the network, computed in training mode."""
    model.train()
    task = _architecture(name).task
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


RATE_ARGUMENT = {"lite-classifier": "dropout"}
"""The builder argument setting the rate of the head dropout, where it is not ``head_dropout``."""


def _eval_outputs(name: str, model: torch.nn.Module) -> list[torch.Tensor]:
    """The network's outputs in eval mode on a fixed input, as a list of tensors."""
    model.eval()
    torch.manual_seed(1)
    with torch.inference_mode():
        if _architecture(name).task == "boxes":
            return [value for found in model([torch.rand(3, 96, 128)]) for value in found.values()]
        out = model(torch.rand(2, 3, 64, 64))
    return [out] if isinstance(out, torch.Tensor) else list(out.values())


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_head_dropout_is_a_builder_argument_off_in_eval_and_default_zero(name):
    architecture = _architecture(name)
    argument = RATE_ARGUMENT.get(architecture.name, "head_dropout")
    assert argument in inspect.signature(architecture.builder).parameters, f"{name} has no {argument} argument"
    model = _build(name, **{argument: 0.5})
    assert model.head_dropouts() and all(module.p == 0.5 for module in model.head_dropouts())
    assert all(all(torch.equal(*pair) for pair in zip(_eval_outputs(name, model), _eval_outputs(name, model),
                                                      strict=True)) for _ in range(2))
    if argument == "head_dropout":  # a new argument: stored models, which do not give it, build without dropout
        assert all(module.p == 0.0 for module in _build(name).head_dropouts())


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_trunk_shared_by_passes_changes_nothing_and_runs_once(name):
    from cytolens.inference.mc_dropout import shared_trunk, stochastic_heads

    model = _build(name)
    plain = _eval_outputs(name, model)
    calls = []
    with pytest.MonkeyPatch.context() as patch:
        for path in model.TRUNK:
            *parents, method = path.split(".")
            owner = model
            for parent in parents:
                owner = getattr(owner, parent)
            run = getattr(type(owner), method)
            patch.setattr(type(owner), method, lambda self, *inputs, run=run: calls.append(1) or run(self, *inputs))
        with shared_trunk(model):
            shared = _eval_outputs(name, model)
            computed = len(calls)
            with stochastic_heads(model, 0.5, seed=0):
                _eval_outputs(name, model)
    assert computed >= len(model.TRUNK) and len(calls) == computed  # the stochastic pass computed no trunk
    assert all(torch.equal(one, other) for one, other in zip(plain, shared, strict=True))
    assert not any(module.training for module in model.modules())
