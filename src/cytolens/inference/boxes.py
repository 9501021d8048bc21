"""Running a box detector on images."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


@torch.inference_mode()
def detect_boxes(
    network: nn.Module, images: list[np.ndarray], device: torch.device
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Detect boxes in a batch of RGB uint8 images.

    The detector resizes internally to its input size and maps boxes back to image pixels.

    Returns:
        Per image: ``(boxes (N, 4) xyxy, labels (N,) 0-based, scores (N,))``.

    """
    tensors = [torch.from_numpy(image).to(device).permute(2, 0, 1).float().div_(255) for image in images]
    outputs = network(tensors)
    return [
        (
            out["boxes"].cpu().numpy().astype(np.float64),
            out["labels"].cpu().numpy().astype(np.int64) - 1,
            out["scores"].cpu().numpy().astype(np.float64),
        )
        for out in outputs
    ]
