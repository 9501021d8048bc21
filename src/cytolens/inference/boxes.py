"""Running a box detector on images."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


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
