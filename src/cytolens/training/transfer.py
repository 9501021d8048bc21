"""Transfer-learning controls shared by every task: staged freezing and layer-wise learning rates."""

from __future__ import annotations

from dataclasses import dataclass

import lightning.pytorch as pl
from torch import nn

from cytolens.models.blocks import freeze_blocks


@dataclass
class Stage:
    """A training stage: freeze the first ``freeze_blocks`` blocks for ``epochs`` epochs.

    ``max_size`` optionally changes the input size (longer side) from this stage on.
    """

    freeze_blocks: int
    epochs: int
    max_size: int | None = None


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


def stage_at(stages: list[Stage], epoch: int) -> Stage:
    """The stage that epoch ``epoch`` (0-based) falls in; the last stage continues past the schedule."""
    start = 0
    for stage in stages:
        if epoch < start + stage.epochs:
            return stage
        start += stage.epochs
    return stages[-1]


class StageSchedule(pl.Callback):
    """Apply the stage of each epoch: freeze blocks and, if given, change the input size."""

    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        stage = stage_at(self.stages, trainer.current_epoch)
        if getattr(module.model, "frozen_blocks", None) != stage.freeze_blocks:
            frozen = freeze_blocks(module.model, stage.freeze_blocks)
            module.print(f"epoch {trainer.current_epoch}: frozen blocks {frozen or 'none'}")
        if stage.max_size and stage.max_size != getattr(module, "input_max_size", None):
            module.set_input_size(stage.max_size)
