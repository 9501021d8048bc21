"""The ordered blocks of a model, and freezing the first K of them (the one transfer mechanism of every task).

A model exposes its blocks from input to output — backbone stem, backbone stages, neck, heads — through a
``blocks()`` method returning ``[(name, module), ...]``. ``--freeze-blocks K`` freezes the first K.
"""

from __future__ import annotations

from torch import nn


def backbone_blocks(body: nn.Module, prefix: str = "backbone") -> list[tuple[str, nn.Module]]:
    """Split a timm ``features_only`` body into a stem and its stages, in order.

    Leading modules (convolution, norm, pooling) form ``<prefix>.stem``; each child of a ``blocks``
    container (EfficientNet, MobileNet) or each ``layerN`` (ResNet) is one stage.
    """
    stem = nn.ModuleList()
    stages: list[tuple[str, nn.Module]] = []
    for name, child in body.named_children():
        if name == "blocks":
            stages.extend((f"{prefix}.stage{i}", stage) for i, stage in enumerate(child.children()))
        elif name.startswith("layer"):
            stages.append((f"{prefix}.stage{len(stages)}", child))
        elif not stages:
            stem.append(child)
        else:
            stages.append((f"{prefix}.{name}", child))
    return [(f"{prefix}.stem", stem), *stages]


def freeze_blocks(model: nn.Module, count: int) -> list[str]:
    """Freeze the first ``count`` blocks of ``model`` (and unfreeze the rest).

    Frozen blocks get ``requires_grad = False`` and their normalisation layers are kept in eval mode
    by :func:`keep_frozen_norms_in_eval` during training.

    Returns:
        The names of the frozen blocks.

    """
    blocks = model.blocks()
    if count < 0 or count > len(blocks):
        raise ValueError(
            f"cannot freeze {count} blocks: the model has {len(blocks)} ({', '.join(n for n, _ in blocks)})"
        )
    for index, (_, block) in enumerate(blocks):
        for parameter in block.parameters():
            parameter.requires_grad_(index >= count)
    model.frozen_blocks = count
    return [name for name, _ in blocks[:count]]


def keep_frozen_norms_in_eval(model: nn.Module) -> None:
    """Put the normalisation layers of frozen blocks in eval mode, so their running statistics stay put."""
    for _, block in model.blocks()[: getattr(model, "frozen_blocks", 0)]:
        for module in block.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
