"""The base of every task's Lightning module: the model, its optimiser settings, and how it trains them."""

from __future__ import annotations

import lightning.pytorch as pl
from torch import nn

from cytolens.models.blocks import keep_frozen_norms_in_eval
from cytolens.training.optim import adamw_warmup_cosine


class TaskModule(pl.LightningModule):
    """Trains ``model`` with :func:`~cytolens.training.optim.adamw_warmup_cosine` (pretrained blocks at
    ``lr * pretrained_lr_factor``), keeping the norms of frozen blocks in eval mode at every batch.

    Args:
        model: A registered architecture (``blocks()`` exposed).
        lr: Learning rate of the blocks trained from scratch (AdamW).
        weight_decay: Weight decay, not applied to norms and biases.
        warmup_steps: Linear warm-up steps.
        pretrained_lr_factor: Learning-rate factor of the pretrained blocks.

    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_steps: int = 150,
        pretrained_lr_factor: float = 1.0,
    ) -> None:
        super().__init__()
        self.model = model
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_steps = warmup_steps
        self.pretrained_lr_factor = pretrained_lr_factor

    def on_train_batch_start(self, batch: object, batch_idx: int) -> None:
        keep_frozen_norms_in_eval(self.model)

    def configure_optimizers(self) -> dict:
        return adamw_warmup_cosine(
            self.model,
            self.lr,
            self.weight_decay,
            self.pretrained_lr_factor,
            self.warmup_steps,
            int(self.trainer.estimated_stepping_batches),
        )


__all__ = ["TaskModule"]
