"""Running a box detector on images, and refusing images it cannot see at its scale.

A box detector resizes every image to its input as torchvision's ``GeneralizedRCNNTransform`` does:
by ``min(min_size / shorter side, max_size / longer side)``. A very large image is shrunk so much that its
cells shrink below what the detector learnt to find (a 12,000 x 12,000 mosaic into a 512 input: 23
times, a 100-pixel cell becomes 4 pixels) and it would report no cells; a very thin image loses a side
altogether (3 x 2,000 into 512 x 384: 0 x 512 pixels, which torch cannot resize). :func:`check_fit`
refuses both, so that such an image is reported instead of counted as empty. Point models need no such
check: they run on tiles at the image's own scale (:func:`~cytolens.inference.peaks.predict_points`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cytolens.errors import DataError

MAX_SHRINK = 4.0
"""Largest factor by which a box detector may shrink an image to its input.

The bundled box model learnt from 640 x 480 images shrunk 1.25 times into its 512 x 384 input (its random
crops zoom in up to 1.4 times); at 4 times its cells are under a third of the size it learnt them at.
"""


def check_fit(network: nn.Module, path: str | Path, width: int, height: int) -> None:
    """Refuse an image that ``network`` (a torchvision detector) would shrink too much or to nothing.

    Args:
        network: The detector; one without a torchvision ``transform`` (min and max size) is not checked.
        path: The image, named in the error.
        width: Image width.
        height: Image height.

    Raises:
        DataError: If a side would become less than one pixel at the input, or the image would be shrunk
            more than :data:`MAX_SHRINK` times.

    """
    transform = getattr(network, "transform", None)
    if transform is None or not hasattr(transform, "max_size"):
        return
    scale = min(transform.min_size[-1] / min(width, height), transform.max_size / max(width, height))
    resized = (math.floor(width * scale), math.floor(height * scale))
    if min(resized) < 1:
        raise DataError(
            path, f"{width}x{height} image is too thin for the model: it would be {resized[0]}x{resized[1]} "
            "pixels at its input"
        )
    if 1 / scale > MAX_SHRINK:
        raise DataError(
            path, f"{width}x{height} image would be shrunk {1 / scale:.0f} times to the model's input; "
            "cells would be missed — crop or tile it"
        )


@torch.inference_mode()
def detect_boxes(
    network: Callable[[list[torch.Tensor]], list[dict[str, torch.Tensor]]],
    images: list[np.ndarray],
    device: torch.device,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Detect boxes in a batch of RGB uint8 images.

    The detector (a torchvision detection model in eval mode, or anything called like one, such as
    :class:`~cytolens.inference.onnx_boxes.OnnxFCOS`) resizes internally to its input size and maps boxes
    back to image pixels.

    Returns:
        Per image: ``(boxes (N, 4) xyxy, labels (N,) 0-based, scores (N,))``. Detections of the background
        column (label 0 inside torchvision's models; FCOS scores it like any class) are dropped.

    """
    tensors = [torch.from_numpy(image).to(device).permute(2, 0, 1).float().div_(255) for image in images]
    found = []
    for out in network(tensors):
        keep = out["labels"] > 0
        found.append(
            (
                out["boxes"][keep].cpu().numpy().astype(np.float64),
                out["labels"][keep].cpu().numpy().astype(np.int64) - 1,
                out["scores"][keep].cpu().numpy().astype(np.float64),
            )
        )
    return found
