"""The Lightning module that trains point detectors (proximity regression plus per-pixel classes).

Training loss per batch: ``L = proximity_loss + class_weight * class_loss``; with auxiliary data each
step also sees an auxiliary batch and minimises ``aux_weight * L_target + L_aux``. At the end of each
validation the decoding threshold ``ξ`` (``threshold_rel``) is chosen from
:data:`~cytolens.inference.peaks.THRESHOLD_GRID` to maximise detection F1 on the validation images at
the matching radius (on a tie, the higher ``ξ``); ``val/f1`` and the other figures are logged at that
``ξ``. Pixels outside a batch's ``known`` map (unlabelled cells of partially labelled images) count in
no loss, and peaks found on them count neither as true nor as false.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.inference.peaks import DEFAULT_THRESHOLDS, peak_candidates, to_xy, tune_threshold_rel
from cytolens.models.card import PointThresholds
from cytolens.training.proximity import class_loss, proximity_loss
from cytolens.training.task_module import TaskModule

Batch = dict[str, Any]


class PointModule(TaskModule):
    """Trains a point FCN; validates by detection F1 after tuning ``ξ``.

    Args:
        model: A registered point model (``blocks()`` exposed; returns ``proximity`` and ``logits``).
        classes: The model's class names.
        lr: Base learning rate (AdamW).
        weight_decay: Weight decay, not applied to norms and biases.
        warmup_steps: Linear warm-up steps.
        pretrained_lr_factor: Learning-rate factor of the encoder blocks.
        loss_lambda: Background weight ``λ`` of the proximity loss.
        class_weight: Weight of the class cross-entropy.
        aux_weight: ``γ`` in ``γ·L_target + L_aux`` (used when batches come with auxiliary data).
        match_radius: Radius (pixels) at which a found centre matches a true one.
        min_distance: Smallest distance (pixels) between two found centres.
        threshold_abs: Peaks must also exceed this absolute proximity.

    """

    def __init__(
        self,
        model: nn.Module,
        classes: list[str],
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_steps: int = 150,
        pretrained_lr_factor: float = 1.0,
        loss_lambda: float = 5.0,
        class_weight: float = 1.0,
        aux_weight: float = 1.0,
        match_radius: float = 12.0,
        min_distance: int = 6,
        threshold_abs: float = DEFAULT_THRESHOLDS["threshold_abs"],
    ) -> None:
        super().__init__(model, lr, weight_decay, warmup_steps, pretrained_lr_factor)
        self.classes = list(classes)
        self.loss_lambda = loss_lambda
        self.class_weight = class_weight
        self.aux_weight = aux_weight
        self.match_radius = match_radius
        self.min_distance = min_distance
        self.threshold_abs = threshold_abs
        self.threshold_rel = DEFAULT_THRESHOLDS["threshold_rel"]
        self._truth: list[AnnotatedImage] = []
        self._candidates: list[tuple[AnnotatedImage, float]] = []

    def tuned_thresholds(self) -> PointThresholds:
        """Decoding thresholds for the model card: ``ξ`` as last tuned, and the fixed ones."""
        return PointThresholds(
            threshold_rel=self.threshold_rel, threshold_abs=self.threshold_abs, min_distance=self.min_distance
        )

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``proximity``, ``class`` and their weighted sum ``loss`` on one batch."""
        out = self.model(batch["image"])
        proximity = proximity_loss(out["proximity"], batch["proximity"], self.loss_lambda, batch["known"])
        classes = class_loss(out["logits"], batch["classes"])
        return {"proximity": proximity, "class": classes, "loss": proximity + self.class_weight * classes}

    def training_step(self, batches: tuple[Batch, ...], batch_idx: int) -> torch.Tensor:
        size = len(batches[0]["image"])
        target = self.losses(batches[0])
        loss = target["loss"]
        if len(batches) > 1:
            auxiliary = self.losses(batches[1])
            loss = self.aux_weight * loss + auxiliary["loss"]
            self.log("train/aux_loss", auxiliary["loss"], batch_size=size)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/proximity", target["proximity"], batch_size=size)
        self.log("train/class", target["class"], batch_size=size)
        return loss

    def validation_step(self, batches: tuple[Batch, ...], batch_idx: int) -> None:
        batch = batches[0]
        out = self.model(batch["image"])
        loss = proximity_loss(out["proximity"], batch["proximity"], self.loss_lambda, batch["known"])
        self.log("val/proximity", loss, batch_size=len(batch["image"]))
        for index, (height, width) in enumerate(batch["size"]):
            proximity = out["proximity"][index, 0, :height, :width].float().cpu().numpy()
            peaks = peak_candidates(proximity, self.min_distance, self.threshold_abs)
            known = batch["known"][index, peaks[:, 0], peaks[:, 1]].cpu().numpy() > 0
            peaks = peaks[known]  # peaks on unlabelled cells are neither right nor wrong
            labels = out["logits"][index, :, peaks[:, 0], peaks[:, 1]].argmax(dim=0).cpu().numpy()
            key = f"{batch_idx}-{index}"
            true = Cells(centres=batch["points"][index].cpu().numpy(), labels=batch["labels"][index].cpu().numpy())
            self._truth.append(AnnotatedImage(Path(key), width, height, key, cells=true))
            found = AnnotatedImage(Path(key), width, height, key, cells=Cells(
                centres=to_xy(peaks), labels=labels, scores=proximity[peaks[:, 0], peaks[:, 1]]))
            self._candidates.append((found, float(proximity.max())))

    def on_validation_epoch_end(self) -> None:
        if not self._truth:
            return
        truth = Dataset(self.classes, self._truth)
        self.threshold_rel, chosen = tune_threshold_rel(self._candidates, truth, self.match_radius, self.threshold_abs)
        self.log("val/f1", float(chosen["f1"] or 0.0), prog_bar=True)
        for name in ("precision", "recall", "class_accuracy", "macro_f1"):
            self.log(f"val/{name}", float(chosen[name] or 0.0))
        self.log("val/threshold_rel", self.threshold_rel)
        self._truth, self._candidates = [], []

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["threshold_rel"] = self.threshold_rel  # so that a resumed run exports the tuned ξ

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.threshold_rel = checkpoint.get("threshold_rel", self.threshold_rel)
