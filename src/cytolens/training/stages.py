"""Training stages: which blocks are frozen and what input size is used, epoch by epoch.

A stage freezes the first ``freeze_blocks`` blocks for ``epochs`` epochs and may set the input size
(``max_size``) from that stage on. The input size of the current stage lives in one object,
:class:`InputSize`: :class:`StageSchedule` moves it at the start of every epoch and the datasets and
Lightning modules read it; nothing else changes it. For box detectors the size is the longer side of an
input image and the shorter side is :func:`short_side` of it; for point models it is the side of the
square training crops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import lightning.pytorch as pl

from cytolens.models.blocks import freeze_blocks

log = logging.getLogger(__name__)


@dataclass
class Stage:
    """A training stage: freeze the first ``freeze_blocks`` blocks for ``epochs`` epochs.

    ``max_size`` optionally changes the input size (see :class:`InputSize`) from this stage on.
    """

    freeze_blocks: int
    epochs: int
    max_size: int | None = None


def short_side(long_side: int) -> int:
    """The shorter side of a box-detector input whose longer side is ``long_side``: 3/4 of it, rounded down.

    Examples:
        >>> short_side(416)
        312

    """
    return long_side * 3 // 4


def stage_at(stages: list[Stage], epoch: int) -> Stage:
    """The stage that epoch ``epoch`` (0-based) falls in; the last stage continues past the schedule."""
    start = 0
    for stage in stages:
        if epoch < start + stage.epochs:
            return stage
        start += stage.epochs
    return stages[-1]


class InputSize:
    """The input size of the current training stage: the one value that stages change, read by data and modules.

    Args:
        stages: The training stages (none: ``base`` throughout).
        base: The size before any stage sets one (a box architecture's ``max_size``, the recipe's crop size).

    Attributes:
        staged: The size set by the stages so far (the ``max_size`` of the latest stage, up to the current
            one, that gives one); ``None`` before any stage sets one.

    Examples:
        >>> size = InputSize([Stage(0, 1), Stage(0, 2, max_size=512)], base=416)
        >>> size.side, size.final
        (416, 512)
        >>> size.enter(1)
        >>> size.side, size.staged
        (512, 512)

    """

    def __init__(self, stages: list[Stage], base: int) -> None:
        self.stages = list(stages)
        self.base = base
        self.staged: int | None = None
        self.enter(0)

    @property
    def side(self) -> int:
        """The current size: the staged one, else ``base``."""
        return self.staged or self.base

    @property
    def final(self) -> int:
        """The size of the last stage (the trained model's input size)."""
        return next((stage.max_size for stage in reversed(self.stages) if stage.max_size), self.base)

    def enter(self, epoch: int) -> None:
        """Take the size of epoch ``epoch`` (0-based; called by :class:`StageSchedule` as each epoch starts)."""
        staged, end = None, 0
        for stage in self.stages:  # up to the stage of ``epoch`` (the last one past the schedule)
            staged, end = stage.max_size or staged, end + stage.epochs
            if epoch < end:
                break
        self.staged = staged


class StageSchedule(pl.Callback):
    """Apply the stage of each epoch: freeze blocks and move the input size.

    Args:
        stages: The training stages.
        input_size: The input size that the datasets and the module read.

    """

    def __init__(self, stages: list[Stage], input_size: InputSize) -> None:
        self.stages = stages
        self.input_size = input_size

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        stage = stage_at(self.stages, trainer.current_epoch)
        if getattr(module.model, "frozen_blocks", None) != stage.freeze_blocks:
            frozen = freeze_blocks(module.model, stage.freeze_blocks)
            log.info("epoch %d: frozen blocks %s", trainer.current_epoch, frozen or "none")
        self.input_size.enter(trainer.current_epoch)
