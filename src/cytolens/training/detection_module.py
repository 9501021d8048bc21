"""The Lightning module that trains box detectors."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics.detection import MeanAveragePrecision

from cytolens.training.stages import InputSize, short_side
from cytolens.training.task_module import TaskModule


def detections_per_image(model: nn.Module) -> int:
    """The most boxes the detector returns for one image (FCOS holds it, Faster R-CNN its ROI heads)."""
    return int(getattr(model, "roi_heads", model).detections_per_img)


class DetectionModule(TaskModule):
    """Trains a torchvision detector; validates by COCO mAP (``val/map50`` is logged for checkpointing).

    The mAP counts up to as many boxes per image as the detector returns (:func:`detections_per_image`), so
    that dense fields are scored on all their boxes and torchmetrics has no reason to warn that it drops some.

    Args:
        model: A registered box detector (``blocks()`` exposed).
        input_size: The input size of the current training stage: once a stage sets one, the detector's own
            resizing follows it at the start of each epoch (longer side, and :func:`short_side` of it); until then
            the detector keeps the size it was built with.
        lr: Base learning rate (AdamW).
        weight_decay: Weight decay, not applied to norms and biases.
        warmup_steps: Linear warm-up steps.
        pretrained_lr_factor: Learning-rate factor of the pretrained backbone blocks.
        grad_clip: Gradient norm clip.

    """

    def __init__(
        self,
        model: nn.Module,
        input_size: InputSize,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_steps: int = 150,
        pretrained_lr_factor: float = 1.0,
    ) -> None:
        super().__init__(model, lr, weight_decay, warmup_steps, pretrained_lr_factor)
        self.input_size = input_size
        most = detections_per_image(model)
        self.val_map = MeanAveragePrecision(
            iou_type="bbox", backend="pycocotools", max_detection_thresholds=[1, min(100, most), most]
        )

    def on_train_epoch_start(self) -> None:
        staged = self.input_size.staged
        if staged:
            self.model.transform.max_size = staged
            self.model.transform.min_size = (short_side(staged),)

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        losses = self.model(images, targets)
        loss = sum(losses.values())
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=len(images))
        return loss

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        images, targets = batch
        predictions = self.model(images)
        self.val_map.update(
            [{k: p[k] for k in ("boxes", "scores", "labels")} for p in predictions],
            [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets],
        )

    def on_validation_epoch_end(self) -> None:
        figures = self.val_map.compute()
        self.val_map.reset()
        self.log("val/map50", figures["map_50"], prog_bar=True)
        self.log("val/map50_95", figures["map"])
