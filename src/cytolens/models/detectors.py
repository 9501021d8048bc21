"""Box detectors built from torchvision's detection models on a timm backbone with a feature pyramid.

Two families share one backbone + FPN: the one-stage FCOS (the default; fast on CPU) and the
two-stage Faster R-CNN. Labels inside the torchvision models are 1-based (0 is background);
``num_classes`` given to the builders counts only the real classes.

Both take ``head_dropout``, the rate of the dropout in their heads (FCOS: on the outputs of its classification
and regression towers; Faster R-CNN: after each layer of its box head's MLP), 0 by default. The dropout is active
only in Monte-Carlo dropout passes (:mod:`cytolens.inference.mc_dropout`), which run the deterministic trunk
(``TRUNK``: backbone + FPN, and FCOS's towers) once and the rest once per pass.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from cytolens.io.validation import check_number
from cytolens.models.backbones import create_backbone, mean_std
from cytolens.models.blocks import backbone_blocks
from cytolens.models.registry import register_architecture


class BackboneWithFPN(nn.Module):
    """A timm feature extractor followed by a torchvision :class:`FeaturePyramidNetwork`.

    Args:
        backbone: timm model name.
        weights: ``"imagenet"``, a weights file, or ``None``.
        fpn_channels: Channels of every pyramid level.
        extra_max_pool: Add a max-pooled extra level (used by Faster R-CNN's RPN).

    """

    def __init__(
        self, backbone: str, weights: str | Path | None, fpn_channels: int, extra_max_pool: bool = False
    ) -> None:
        super().__init__()
        self.body = create_backbone(backbone, weights, out_indices=(2, 3, 4))
        self.fpn = FeaturePyramidNetwork(
            self.body.feature_info.channels(), fpn_channels, extra_blocks=LastLevelMaxPool() if extra_max_pool else None
        )
        self.out_channels = fpn_channels

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """Pyramid features keyed ``"0"``, ``"1"``, ... from fine to coarse."""
        features = self.body(images)
        return self.fpn(OrderedDict((str(i), feature) for i, feature in enumerate(features)))


class PartialLabelFCOSHead(FCOSHead):
    """torchvision's FCOS head whose classification loss leaves out the unlabelled cells of an image.

    In a partially labelled image (BCCD boxes about half of the red cells), the locations on a cell nobody
    boxed would be taught as background. A training target may therefore carry ``masks``: a ``(1, H, W)``
    map, non-zero on unlabelled cells (stained pixels in no box, see
    :func:`cytolens.training.box_data.unlabelled_cells`); the key is ``masks`` because torchvision's
    transform resizes ``masks`` with the image. Background locations (matched to no box) whose centre falls
    on it get a constant class logit far below zero, so they add neither loss nor gradient; the box and
    centre-ness losses concern matched locations only and are unchanged.
    """

    IGNORED_LOGIT = -30.0
    """Class logit of an ignored location: its focal loss as background is below 1e-20."""

    def compute_loss(
        self,
        targets: list[dict[str, torch.Tensor]],
        head_outputs: dict[str, torch.Tensor],
        anchors: list[torch.Tensor],
        matched_idxs: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        if any("masks" in target for target in targets):
            ignored = torch.stack(
                [
                    _on_mask(target.get("masks"), boxes) & (matched < 0)
                    for target, boxes, matched in zip(targets, anchors, matched_idxs, strict=True)
                ]
            )
            logits = head_outputs["cls_logits"]
            constant = torch.full((), self.IGNORED_LOGIT, dtype=logits.dtype, device=logits.device)
            head_outputs = {**head_outputs, "cls_logits": torch.where(ignored[..., None], constant, logits)}
        return super().compute_loss(targets, head_outputs, anchors, matched_idxs)


class DropoutTower(nn.Sequential):
    """The convolution tower of an FCOS head (torchvision's layers, under the same parameter names), then dropout
    (no parameters: checkpoints load as without it).

    Args:
        tower: The tower's layers.
        rate: Dropout rate (0: none).

    """

    def __init__(self, tower: nn.Sequential, rate: float) -> None:
        super().__init__(*tower)
        self.dropout = nn.Dropout(rate)

    def tower(self, x: torch.Tensor) -> torch.Tensor:
        """The tower's features, before the dropout."""
        for layer in itertools.islice(self, len(self) - 1):
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.tower(x))


class DropoutFCOSHead(PartialLabelFCOSHead):
    """:class:`PartialLabelFCOSHead` with dropout on the outputs of its classification and regression towers, before
    the layers giving class logits, boxes and centre-ness.

    Args:
        in_channels: Channels of the pyramid features.
        num_anchors: Anchors per location.
        num_classes: Classes, background included.
        num_convs: Convolutions of each tower.
        dropout: Dropout rate (0: none).

    """

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, num_convs: int, dropout: float) -> None:
        super().__init__(in_channels, num_anchors, num_classes, num_convs=num_convs)
        self.classification_head.conv = DropoutTower(self.classification_head.conv, dropout)
        self.regression_head.conv = DropoutTower(self.regression_head.conv, dropout)


class DropoutMLPHead(TwoMLPHead):
    """torchvision's :class:`TwoMLPHead` (Faster R-CNN's box head) with dropout after each of its two layers.

    Args:
        in_channels: Width of the flattened pooled features.
        representation_size: Units of each layer.
        dropout: Dropout rate (0: none).

    """

    def __init__(self, in_channels: int, representation_size: int, dropout: float) -> None:
        super().__init__(in_channels, representation_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(F.relu(self.fc6(x.flatten(start_dim=1))))
        return self.dropout(F.relu(self.fc7(x)))


def _on_mask(mask: torch.Tensor | None, anchors: torch.Tensor) -> torch.Tensor:
    """Whether each anchor's centre lies on the non-zero pixels of a ``(1, H, W)`` mask (all False without one)."""
    if mask is None:
        return torch.zeros(len(anchors), dtype=torch.bool, device=anchors.device)
    height, width = mask.shape[-2:]
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    cols = centres[:, 0].long().clamp(0, width - 1)
    rows = centres[:, 1].long().clamp(0, height - 1)
    return mask[0, rows, cols] > 0


class _BlocksMixin:
    """Blocks in order for freezing: backbone stem and stages, the FPN neck, then the heads; the trunk that
    Monte-Carlo dropout passes share.
    """

    TRUNK: tuple[str, ...] = ("backbone.forward",)
    """The deterministic parts before the heads' dropout (backbone + FPN), as paths of attributes."""

    def blocks(self) -> list[tuple[str, nn.Module]]:
        heads = [
            (name, module)
            for name, module in self.named_children()
            if name not in ("backbone", "transform") and any(True for _ in module.parameters())
        ]
        return [*backbone_blocks(self.backbone.body), ("neck", self.backbone.fpn), *heads]


class CellFCOS(_BlocksMixin, FCOS):
    """torchvision FCOS with cytolens' block list."""

    def class_heads(self) -> list[str]:
        """Prefixes of the parameters whose shape depends on the number of classes."""
        return ["head.classification_head.cls_logits."]

    TRUNK = ("backbone.forward", "head.classification_head.conv.tower", "head.regression_head.conv.tower")
    """The deterministic parts before the head's dropout (backbone + FPN, the head's towers on each level)."""

    def head_dropouts(self) -> list[nn.Module]:
        """The dropout modules of the head (those Monte-Carlo dropout passes turn on)."""
        return [self.head.classification_head.conv.dropout, self.head.regression_head.conv.dropout]


class CellFasterRCNN(_BlocksMixin, FasterRCNN):
    """torchvision Faster R-CNN with cytolens' block list."""

    def class_heads(self) -> list[str]:
        """Prefixes of the parameters whose shape depends on the number of classes (class scores, per-class boxes)."""
        return ["roi_heads.box_predictor."]

    def head_dropouts(self) -> list[nn.Module]:
        """The dropout modules of the box head (those Monte-Carlo dropout passes turn on)."""
        return [self.roi_heads.box_head.dropout]


def _common(backbone: str, min_size: int, max_size: int) -> dict:
    mean, std = mean_std(backbone)
    return {"min_size": min_size, "max_size": max_size, "image_mean": list(mean), "image_std": list(std)}


@register_architecture("fcos", task="boxes")
def fcos(
    num_classes: int,
    backbone: str = "tf_efficientnet_lite0",
    weights: str | Path | None = "imagenet",
    fpn_channels: int = 96,
    head_convs: int = 4,
    min_size: int = 320,
    max_size: int = 416,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.6,
    detections_per_img: int = 300,
    head_dropout: float = 0.0,
) -> CellFCOS:
    """FCOS one-stage detector on a backbone + 3-level FPN (strides 8, 16, 32); ``head_dropout`` on the outputs of
    its head's towers.
    """
    head_dropout = check_number(head_dropout, "head_dropout", low=0, high=1, high_open=True)
    body = BackboneWithFPN(backbone, weights, fpn_channels)
    anchors = AnchorGenerator(sizes=((16,), (32,), (64,)), aspect_ratios=((1.0,),) * 3)
    anchors_per_place = anchors.num_anchors_per_location()[0]
    head = DropoutFCOSHead(fpn_channels, anchors_per_place, num_classes + 1, head_convs, head_dropout)
    return CellFCOS(
        body,
        num_classes + 1,
        anchor_generator=anchors,
        head=head,
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
        topk_candidates=1000,
        **_common(backbone, min_size, max_size),
    )


@register_architecture("faster-rcnn", task="boxes")
def faster_rcnn(
    num_classes: int,
    backbone: str = "tf_efficientnet_lite0",
    weights: str | Path | None = "imagenet",
    fpn_channels: int = 96,
    representation_size: int = 256,
    min_size: int = 320,
    max_size: int = 416,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_img: int = 300,
    head_dropout: float = 0.0,
) -> CellFasterRCNN:
    """Faster R-CNN two-stage detector on a backbone + FPN (strides 8-64) with a light box head; ``head_dropout``
    after each layer of the box head.
    """
    head_dropout = check_number(head_dropout, "head_dropout", low=0, high=1, high_open=True)
    body = BackboneWithFPN(backbone, weights, fpn_channels, extra_max_pool=True)
    anchors = AnchorGenerator(sizes=((16,), (32,), (64,), (128,)), aspect_ratios=((0.5, 1.0, 2.0),) * 4)
    roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2"], output_size=7, sampling_ratio=2)
    box_head = DropoutMLPHead(fpn_channels * 7 * 7, representation_size, head_dropout)
    return CellFasterRCNN(
        body,
        num_classes=None,
        rpn_anchor_generator=anchors,
        box_roi_pool=roi_pool,
        box_head=box_head,
        box_predictor=FastRCNNPredictor(representation_size, num_classes + 1),
        rpn_pre_nms_top_n_test=600,
        rpn_post_nms_top_n_test=300,
        box_score_thresh=score_thresh,
        box_nms_thresh=nms_thresh,
        box_detections_per_img=detections_per_img,
        **_common(backbone, min_size, max_size),
    )
