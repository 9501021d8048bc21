"""The shared optimiser: pretrained blocks (a detector's ``backbone``, a classifier's ``body``) learn slower."""

from __future__ import annotations

import pytest

from cytolens.models.registry import build_architecture
from cytolens.training.optim import adamw_warmup_cosine
from cytolens.training.patch_module import PatchModule
from cytolens.training.task_module import TaskModule


@pytest.mark.parametrize("architecture", ["lite-classifier", "fcn-small"])
def test_pretrained_blocks_learn_at_the_pretrained_factor_and_the_rest_at_the_full_rate(architecture: str) -> None:
    model = build_architecture(architecture, 3, weights=None)
    optimizer = adamw_warmup_cosine(model, 1e-3, 0.05, 0.1, 10, 100)["optimizer"]
    rate = {id(parameter): group["initial_lr"] for group in optimizer.param_groups for parameter in group["params"]}
    for name, block in model.blocks():
        rates = [rate[id(parameter)] for parameter in block.parameters()]
        assert rates == pytest.approx([1e-4 if name.startswith(("body.", "backbone.")) else 1e-3] * len(rates))
    assert len(rate) == sum(1 for _ in model.parameters())


def test_every_task_module_shares_the_optimiser() -> None:
    module = PatchModule(build_architecture("lite-classifier", 3, weights=None), ["a", "b", "c"], lr=0.01)
    assert isinstance(module, TaskModule) and module.lr == 0.01 and module.model.blocks()[0][0] == "body.stem"
