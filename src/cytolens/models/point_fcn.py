"""Point detectors: an encoder-decoder FCN that regresses a proximity map and a per-pixel class map.

The network takes RGB images scaled to 0-1 (it normalises them itself, with the mean and std its
encoder's weights expect) of any size: it pads them to a multiple of 32 and crops its outputs back,
so both outputs have the input's height and width. It returns a dict:

- ``"proximity"``: ``(B, 1, H, W)`` sigmoid map, high at cell centres (the regression target of
  :func:`cytolens.training.proximity.proximity_map`);
- ``"logits"``: ``(B, C, H, W)`` class logits, meaningful near cell centres.

Shape of the network: an encoder (strides 2-32), a decoder that upsamples level by level and
concatenates the encoder's skip features (a residual block at each level), a full-resolution stem
whose features join the last decoder level, and a multi-context aggregation that projects several
decoder levels, upsamples them to full resolution and fuses them with the full-resolution features
before the two 1x1 heads (with ``class_channels``, the class head reads the fused features through a 3x3
convolution block of its own, so that it can train with a small loss weight without reshaping the decoder
that detection shares). With ``class_decoder``, the class head has a decoder of its own instead: it reads the
encoder's levels from stride 32 up to stride 4 (not the fused full-resolution features, which are shaped for
detection and only ``stem_channels`` wide), and its logits are upsampled to full resolution. Parameters of the
targets (``d``, ``a``) are not part of the model; the checkpoint metadata holds them.

``head_dropout`` (0 by default) drops whole channels of the features entering the two heads (the fused
features, and the class decoder's when there is one; :class:`~torch.nn.Dropout2d`). It is active only in
Monte-Carlo dropout passes (:mod:`cytolens.inference.mc_dropout`), which compute everything before it
(:meth:`PointFCN.head_input`, :attr:`PointFCN.TRUNK`) once and the heads once per pass.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cytolens.io.validation import check_number
from cytolens.models.backbones import create_backbone, mean_std
from cytolens.models.blocks import backbone_blocks
from cytolens.models.registry import register_architecture

STRIDE = 32
"""Inputs are padded to a multiple of this (the encoder's coarsest stride)."""
PROXIMITY_PRIOR_BIAS = -4.0
"""Initial bias of the proximity head (before the sigmoid)."""


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Convolution, batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class ResidualBlock(nn.Module):
    """A residual block: ``depth`` 3x3 convolutions (the first may be strided) plus a shortcut, then ReLU.

    Args:
        cin: Input channels.
        cout: Output channels.
        stride: Stride of the first convolution (and of the shortcut's 1x1 projection).
        depth: Number of 3x3 convolutions on the residual branch (2: the basic ResNet block).

    """

    def __init__(self, cin: int, cout: int, stride: int = 1, depth: int = 2) -> None:
        super().__init__()
        layers = [conv_bn_relu(cin if i == 0 else cout, cout, 3, stride if i == 0 else 1) for i in range(depth - 1)]
        last_in = cin if depth == 1 else cout
        last_stride = stride if depth == 1 else 1
        layers.append(nn.Sequential(nn.Conv2d(last_in, cout, 3, last_stride, 1, bias=False), nn.BatchNorm2d(cout)))
        self.residual = nn.Sequential(*layers)
        self.shortcut = (
            nn.Identity()
            if cin == cout and stride == 1
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.residual(x) + self.shortcut(x))


class DecoderLevel(nn.Module):
    """Upsample the coarser level, concatenate the skip features, reduce (1x1) and refine (one-conv residual block)."""

    def __init__(self, coarse: int, skip: int, cout: int) -> None:
        super().__init__()
        self.reduce = conv_bn_relu(coarse + skip, cout, 1)
        self.refine = ResidualBlock(cout, cout, depth=1)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(coarse, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.refine(self.reduce(torch.cat([up, skip], dim=1)))


class ClassDecoder(nn.Module):
    """The class branch's own decoder: from the encoder's stride-32 level up to stride 4, one
    :class:`DecoderLevel` per level, each ``channels`` wide.

    Args:
        encoder_channels: Channels of the encoder's five levels (strides 2-32).
        channels: Channels of each decoder level.

    """

    STRIDE = 4
    """Stride of the decoder's output (the encoder's second level)."""

    def __init__(self, encoder_channels: list[int], channels: int) -> None:
        super().__init__()
        skips = encoder_channels[-2:0:-1]  # strides 16, 8, 4
        coarse = [encoder_channels[-1], *[channels] * (len(skips) - 1)]
        self.levels = nn.ModuleList(DecoderLevel(c, s, channels) for c, s in zip(coarse, skips, strict=True))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Stride-4 class features for the encoder's five levels."""
        level = features[-1]
        for block, skip in zip(self.levels, features[-2:0:-1], strict=True):
            level = block(level, skip)
        return level


class SmallEncoder(nn.Module):
    """A small from-scratch residual encoder: five stages, each a strided residual block (strides 2-32).

    Args:
        channels: Output channels of the five stages.

    """

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 96, 128)) -> None:
        super().__init__()
        ins = (3, *channels[:-1])
        self.stages = nn.ModuleList(ResidualBlock(cin, cout, stride=2) for cin, cout in zip(ins, channels, strict=True))
        self.out_channels = list(channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """The stages in order, named ``backbone.stage<i>``."""
        return [(f"backbone.stage{i}", stage) for i, stage in enumerate(self.stages)]


class PointFCN(nn.Module):
    """Encoder-decoder FCN with multi-context aggregation; see the module docstring.

    Args:
        encoder: Returns five feature maps at strides 2, 4, 8, 16, 32.
        encoder_channels: Their channels.
        encoder_blocks: The encoder's blocks in order from input to output (for freezing).
        num_classes: Number of cell classes.
        mean: Input normalisation mean (0-1 units).
        std: Input normalisation std.
        decoder_channels: Channels of the decoder levels at strides 16, 8, 4, 2.
        stem_channels: Channels of the full-resolution stem and of the fused features.
        context_channels: Channels each aggregated decoder level is projected to.
        context_levels: How many of the finest decoder levels join the aggregation (1-4).
        head_dropout: Channel dropout rate on the features entering the heads (0: none).
        class_channels: Channels of the class head's own 3x3 convolution block (0: none, a 1x1 head on the
            fused features).
        class_decoder: Channels of the class head's own decoder (:class:`ClassDecoder`; 0: none, the class head
            reads the fused features that detection reads).

    """

    TRUNK = ("head_input",)
    """The deterministic part before the heads' dropout (:meth:`head_input`)."""

    def __init__(
        self,
        encoder: nn.Module,
        encoder_channels: list[int],
        encoder_blocks: list[tuple[str, nn.Module]],
        num_classes: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        decoder_channels: tuple[int, ...] = (96, 64, 48, 32),
        stem_channels: int = 16,
        context_channels: int = 8,
        context_levels: int = 3,
        head_dropout: float = 0.0,
        class_channels: int = 0,
        class_decoder: int = 0,
    ) -> None:
        super().__init__()
        if len(encoder_channels) != 5 or len(decoder_channels) != 4:
            raise ValueError("PointFCN needs 5 encoder levels (strides 2-32) and 4 decoder levels (strides 16-2)")
        if not 1 <= context_levels <= len(decoder_channels):
            raise ValueError(f"context_levels must be 1..{len(decoder_channels)}, got {context_levels}")
        self.encoder = encoder
        self._encoder_blocks = encoder_blocks
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.stem = conv_bn_relu(3, stem_channels)
        coarse = [encoder_channels[-1], *decoder_channels[:-1]]
        skips = encoder_channels[-2::-1]
        self.decoder = nn.ModuleList(
            DecoderLevel(c, s, out) for c, s, out in zip(coarse, skips, decoder_channels, strict=True)
        )
        self.full = conv_bn_relu(decoder_channels[-1] + stem_channels, stem_channels, 1)
        self.context = nn.ModuleList(
            conv_bn_relu(channels, context_channels, 1) for channels in decoder_channels[-context_levels:]
        )
        self.fuse = conv_bn_relu(stem_channels + context_levels * context_channels, stem_channels, 1)
        self.proximity_head = nn.Conv2d(stem_channels, 1, 1)
        # Most pixels are background: start the map near 0 there (sigmoid(-4) = 0.018), as RetinaNet's
        # prior bias does, instead of 0.5 everywhere, which the weighted loss is slow to pull down.
        nn.init.constant_(self.proximity_head.bias, PROXIMITY_PRIOR_BIAS)
        self.class_decoder = ClassDecoder(encoder_channels, class_decoder) if class_decoder else None
        class_in = class_decoder or stem_channels
        self.class_block = conv_bn_relu(class_in, class_channels) if class_channels else nn.Identity()
        self.class_head = nn.Conv2d(class_channels or class_in, num_classes, 1)
        self.head_dropout = nn.Dropout2d(check_number(head_dropout, "head_dropout", low=0, high=1, high_open=True))

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """Blocks from input to output: encoder stages, full-resolution stem, decoder levels, fusion, heads."""
        return [
            *self._encoder_blocks,
            ("stem", self.stem),
            *((f"decoder.level{i}", level) for i, level in enumerate(self.decoder)),
            ("aggregation", nn.ModuleList([self.full, self.context, self.fuse])),
            ("proximity_head", self.proximity_head),
            ("class_head", nn.ModuleList(
                m for m in (self.class_decoder, self.class_block, self.class_head) if m is not None
            )),
        ]

    def class_heads(self) -> list[str]:
        """Prefixes of the parameters whose shape depends on the number of classes."""
        return ["class_head."]

    def head_dropouts(self) -> list[nn.Module]:
        """The dropout before the heads (what Monte-Carlo dropout passes turn on)."""
        return [self.head_dropout]

    def head_input(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the heads read, for ``(B, 3, H, W)`` images in 0-1: the fused full-resolution features
        ``(B, stem_channels, H, W)``, and the class decoder's stride-4 features of the padded image (``None``
        without a class decoder: the class head reads the fused features).
        """
        height, width = images.shape[-2:]
        x = (images - self.mean) / self.std
        x = F.pad(x, (0, -width % STRIDE, 0, -height % STRIDE))
        features = self.encoder(x)
        level = features[-1]
        levels = []
        for block, skip in zip(self.decoder, features[-2::-1], strict=True):
            level = block(level, skip)
            levels.append(level)
        full_size = x.shape[-2:]
        up = F.interpolate(level, size=full_size, mode="bilinear", align_corners=False)
        fused = [self.full(torch.cat([up, self.stem(x)], dim=1))]
        for project, context in zip(self.context, levels[-len(self.context):], strict=True):
            fused.append(F.interpolate(project(context), size=full_size, mode="bilinear", align_corners=False))
        classes = self.class_decoder(features) if self.class_decoder is not None else None
        return self.fuse(torch.cat(fused, dim=1))[..., :height, :width], classes

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Proximity map and class logits at the input's resolution, for ``(B, 3, H, W)`` images in 0-1."""
        fused, classes = self.head_input(images)
        features = self.head_dropout(fused)
        if classes is None:
            logits = self.class_head(self.class_block(features))
        else:
            logits = self.class_head(self.class_block(self.head_dropout(classes)))
            padded = (classes.shape[-2] * ClassDecoder.STRIDE, classes.shape[-1] * ClassDecoder.STRIDE)
            logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
            logits = logits[..., : fused.shape[-2], : fused.shape[-1]]
        return {"proximity": torch.sigmoid(self.proximity_head(features)), "logits": logits}


@register_architecture("fcn-lite0", task="points")
def fcn_lite0(
    num_classes: int,
    weights: str | Path | None = "imagenet",
    decoder_channels: tuple[int, ...] = (96, 64, 48, 32),
    stem_channels: int = 16,
    context_channels: int = 8,
    context_levels: int = 3,
    head_dropout: float = 0.0,
    class_channels: int = 0,
    class_decoder: int = 0,
) -> PointFCN:
    """Point FCN on an EfficientNet-Lite0 encoder (ImageNet weights), about 3.4 M parameters."""
    backbone = "tf_efficientnet_lite0"
    encoder = create_backbone(backbone, weights, out_indices=(0, 1, 2, 3, 4))
    mean, std = mean_std(backbone)
    return PointFCN(
        encoder, encoder.feature_info.channels(), backbone_blocks(encoder), num_classes, mean, std,
        tuple(decoder_channels), stem_channels, context_channels, context_levels, head_dropout, class_channels,
        class_decoder,
    )


@register_architecture("fcn-small", task="points")
def fcn_small(
    num_classes: int,
    weights: str | Path | None = None,
    encoder_channels: tuple[int, ...] = (16, 32, 64, 96, 128),
    decoder_channels: tuple[int, ...] = (96, 64, 48, 32),
    stem_channels: int = 16,
    context_channels: int = 8,
    context_levels: int = 3,
    head_dropout: float = 0.0,
    class_channels: int = 0,
    class_decoder: int = 0,
) -> PointFCN:
    """Point FCN on a small residual encoder trained from scratch (``weights`` is ignored: nothing pretrained)."""
    encoder = SmallEncoder(tuple(encoder_channels))
    mean, std = mean_std("fcn-small")
    return PointFCN(
        encoder, encoder.out_channels, encoder.blocks(), num_classes, mean, std,
        tuple(decoder_channels), stem_channels, context_channels, context_levels, head_dropout, class_channels,
        class_decoder,
    )
