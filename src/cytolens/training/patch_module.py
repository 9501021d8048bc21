"""The Lightning module that trains patch classifiers (single-label softmax or multi-label sigmoids).

Training loss: cross-entropy over the types (single-label), or binary cross-entropy of each type's sigmoid
(multi-label). The optimiser is AdamW with the pretrained body (the classifier's ``body.*`` blocks) at
``lr * pretrained_lr_factor`` and the head at ``lr``. Each validation measures the validation patches with
:mod:`cytolens.metrics.classification`: accuracy, macro-F1 and macro and per-type ROC-AUC, and for a
multi-label model the exact-match accuracy, at per-type thresholds tuned on those patches
(:func:`tune_thresholds`), which the model card then carries (:class:`~cytolens.models.card.PatchThresholds`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cytolens.metrics.classification import classification_metrics, multilabel_metrics
from cytolens.models.card import PatchThresholds
from cytolens.training.task_module import TaskModule

THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)
"""The per-type thresholds :func:`tune_thresholds` chooses from."""

DEFAULT_THRESHOLD = 0.5


def tune_thresholds(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """Per-type thresholds of a multi-label classifier: each the value of :data:`THRESHOLD_GRID` with the best F1
    of its type (a tie: the one nearest 0.5); a type with no positive or no negative patch keeps 0.5.

    Args:
        y_true: ``(N, C)`` 0/1 truth.
        y_score: ``(N, C)`` sigmoid probabilities.

    Returns:
        ``(C,)`` thresholds.

    Examples:
        >>> tune_thresholds(np.array([[1], [1], [0]]), np.array([[0.3], [0.9], [0.1]])).tolist()
        [0.3]

    """
    y_true = np.asarray(y_true, dtype=bool)
    predicted = np.asarray(y_score)[:, :, None] >= THRESHOLD_GRID  # (N, C, T)
    tp = (predicted & y_true[:, :, None]).sum(axis=0)
    with np.errstate(invalid="ignore"):  # 0/0 for a type without positives, which keeps 0.5 below
        f1 = 2 * tp / (predicted.sum(axis=0) + y_true.sum(axis=0)[:, None])  # (C, T)
    nearest = np.argsort(np.abs(THRESHOLD_GRID - DEFAULT_THRESHOLD), kind="stable")
    chosen = THRESHOLD_GRID[nearest[np.argmax(f1[:, nearest], axis=1)]]
    positives = y_true.sum(axis=0)
    return np.where((positives > 0) & (positives < len(y_true)), chosen, DEFAULT_THRESHOLD)


class PatchModule(TaskModule):
    """Trains a patch classifier; validates by accuracy, macro-F1 and per-type AUC.

    Args:
        model: A registered patch classifier (``blocks()`` exposed, ``body.*`` blocks pretrained; returns logits).
        classes: The model's class names.
        multi_label: Sigmoids and binary cross-entropy (targets ``(B, C)`` 0/1) instead of a softmax.
        lr: Learning rate of the head (AdamW).
        weight_decay: Weight decay, not applied to norms and biases.
        warmup_steps: Linear warm-up steps.
        pretrained_lr_factor: Learning-rate factor of the body's blocks.

    Attributes:
        thresholds: Per-type thresholds of a multi-label model, as last tuned (``None``: not tuned).

    """

    def __init__(
        self,
        model: nn.Module,
        classes: list[str],
        multi_label: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_steps: int = 150,
        pretrained_lr_factor: float = 1.0,
    ) -> None:
        super().__init__(model, lr, weight_decay, warmup_steps, pretrained_lr_factor)
        self.classes = list(classes)
        self.multi_label = multi_label
        self.thresholds: list[float] | None = None
        self._targets: list[torch.Tensor] = []
        self._scores: list[torch.Tensor] = []

    def tuned_thresholds(self) -> PatchThresholds:
        """The thresholds for the model card: per type as tuned on validation, else the default."""
        if self.thresholds is None:
            return PatchThresholds()
        score = dict(zip(self.classes, self.thresholds, strict=True))
        return PatchThresholds(score=score, tuned_on="validation patches: the best F1 of each type")

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of each type (multi-label), else cross-entropy over the types."""
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits, target)
        return F.cross_entropy(logits, target)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self.model(batch["image"]), batch["target"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self.model(batch["image"])
        self.log("val/loss", self.loss(logits, batch["target"]), batch_size=len(batch["image"]))
        self._scores.append(self.model.probabilities(logits).float().cpu())
        self._targets.append(batch["target"].cpu())

    def figures(self, y_true: np.ndarray, y_score: np.ndarray) -> dict[str, Any]:
        """The validation figures of patches' truth and probabilities (multi-label: thresholds tuned first)."""
        if not self.multi_label:
            return classification_metrics(y_true, y_score, self.classes)
        thresholds = tune_thresholds(y_true, y_score)
        self.thresholds = thresholds.tolist()
        return multilabel_metrics(y_true, y_score, self.classes, thresholds)

    def validation_figures(self, y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
        """The figures logged after a validation, by name (``val/macro_f1``, ``val/accuracy``, ``val/auc`` and
        ``val/auc/<type>`` where defined, ``val/exact_match`` for a multi-label model, whose thresholds are tuned
        first).
        """
        figures = self.figures(y_true, y_score)
        logged = {"val/macro_f1": float(figures["f1"] or 0.0), "val/accuracy": float(figures["accuracy"])}
        if self.multi_label:
            logged["val/exact_match"] = float(figures["exact_match"])
        if figures["auc"] is not None:
            logged["val/auc"] = float(figures["auc"])
        for name, values in figures["per_class"].items():
            if values["auc"] is not None:
                logged[f"val/auc/{name}"] = float(values["auc"])
        return logged

    def on_validation_epoch_end(self) -> None:
        if not self._targets:
            return
        y_true, y_score = torch.cat(self._targets).numpy(), torch.cat(self._scores).numpy()
        self._targets, self._scores = [], []
        for name, value in self.validation_figures(y_true, y_score).items():
            self.log(name, value, prog_bar=name in ("val/macro_f1", "val/exact_match"))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["patch_thresholds"] = self.thresholds  # so that a resumed run exports the tuned thresholds

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.thresholds = checkpoint.get("patch_thresholds", self.thresholds)
