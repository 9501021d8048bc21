"""FCOS box detectors in ONNX Runtime or OpenVINO: the network in the runtime, the rest in torch.

The pre-processing (resize to the model's input size, normalise, pad to a multiple of 32) and the
post-processing (torchvision FCOS ``postprocess_detections`` and ``transform.postprocess``, which maps
boxes back to image pixels) are torchvision's own code, so the only difference from the PyTorch path is
the network's arithmetic (outputs within about 1e-5). Images already at the input size skip torchvision's
resize (an identity at scale 1) and padding copy. The post-processing reads its thresholds (NMS IoU,
candidate score) from the torch model at every call, so thresholds set at run time (see
:func:`cytolens.inference.boxes.set_nms`) apply without exporting again. The network part (backbone + FPN
+ head) is exported for one padded input size (height x width; the batch size is free) and cached (see
:mod:`cytolens.inference.runtimes`); a model calibrated by ``cytolens quantise`` runs it in int8 (see
:mod:`cytolens.inference.int8`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.image_list import ImageList

from cytolens.errors import ModelError
from cytolens.inference.runtimes import OPSET, ShapeSessions, cache_dir, export, in_runtime
from cytolens.models.card import Int8Calibration

OUTPUTS = ("cls_logits", "bbox_regression", "bbox_ctrness")


class _Network(nn.Module):
    """Backbone + FPN + head of an FCOS model: normalised padded images in, the three head outputs out."""

    def __init__(self, fcos: FCOS) -> None:
        super().__init__()
        self.backbone = fcos.backbone
        self.head = fcos.head

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        outputs = self.head(list(self.backbone(images).values()))
        return tuple(outputs[name] for name in OUTPUTS)


def export_onnx(network: FCOS, height: int, width: int) -> bytes:
    """Export the network part of an FCOS model for padded inputs of ``height`` x ``width`` pixels.

    Returns:
        The ONNX model (input ``images`` (N, 3, height, width); outputs ``cls_logits``, ``bbox_regression``,
        ``bbox_ctrness``, each (N, anchors, C)).

    """
    return export(_Network(network), torch.zeros(1, 3, height, width), ["images"], OUTPUTS)


class OnnxFCOS:
    """An FCOS model whose network runs in ONNX Runtime or OpenVINO; called like the model in eval mode.

    Args:
        network: The torch FCOS model (for pre/post-processing, and the fallback).
        sessions: The runtime's compiled exports of its network, one per padded input size (int8 when its card has a
            calibration).

    """

    def __init__(self, network: FCOS, sessions: ShapeSessions) -> None:
        self.network = network
        self.sessions = sessions
        self.runtime = sessions.runtime
        self._strides = network.backbone.body.feature_info.reduction()

    def _batch(self, images: list[torch.Tensor]) -> ImageList:
        """The images normalised, resized and padded as the model's transform does (its resize skipped when
        every image is at the input size already and its padding when none is needed: both are identities).
        """
        transform = self.network.transform
        shapes = {tuple(image.shape) for image in images}
        if len(shapes) == 1:
            height, width = next(iter(shapes))[-2:]
            scale = min(
                float(transform.min_size[-1]) / min(height, width),
                float(transform.max_size) / max(height, width),
            )
            if scale == 1.0 and height % transform.size_divisible == 0 and width % transform.size_divisible == 0:
                return ImageList(transform.normalize(torch.stack(images)), [(height, width)] * len(images))
        return transform(images)[0]

    def __call__(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Detect in RGB float images (3, H, W) in [0, 1]: a list of ``{"boxes", "labels", "scores"}`` as FCOS."""
        fcos = self.network
        original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        batch = self._batch(images)
        height, width = batch.tensors.shape[-2:]
        session = self.sessions.get(height, width, lambda: export_onnx(fcos, height, width))
        if session is None:
            return fcos(images)
        arrays = session.run(batch.tensors.contiguous().numpy(), OUTPUTS)
        outputs = {name: torch.from_numpy(array) for name, array in zip(OUTPUTS, arrays, strict=True)}
        grids = [(height // stride, width // stride) for stride in self._strides]
        per_level = [rows * cols for rows, cols in grids]
        if sum(per_level) != outputs["cls_logits"].shape[1]:
            raise ModelError(f"runtime outputs do not match the feature grids {grids} of {height}x{width} inputs")
        features = [batch.tensors.new_empty((0, 0, rows, cols)) for rows, cols in grids]
        anchors = fcos.anchor_generator(batch, features)
        split_outputs = {name: list(value.split(per_level, dim=1)) for name, value in outputs.items()}
        split_anchors = [list(anchor.split(per_level)) for anchor in anchors]
        detections = fcos.postprocess_detections(split_outputs, split_anchors, batch.image_sizes)
        return fcos.transform.postprocess(detections, batch.image_sizes, original_sizes)


def box_backend(
    backend: str,
    network: nn.Module,
    task: str,
    device: torch.device,
    checkpoint: str | Path,
    int8: Int8Calibration | None = None,
) -> OnnxFCOS | None:
    """Choose how a box model runs: an :class:`OnnxFCOS` for ONNX Runtime or OpenVINO, or ``None`` for PyTorch.

    ``auto`` picks the first runtime of :data:`~cytolens.inference.runtimes.RUNTIMES` that is installed for an FCOS
    box model on the CPU (and, for a float model, falls back to PyTorch with an info log if the export fails); ``onnx``
    or ``openvino`` insists on that runtime. With ``int8`` (the card's calibration), the runtime runs the network in
    int8, and a failed export raises; PyTorch runs it in float (said in an info log).

    Raises:
        CytolensError: If ``backend`` is not one of :data:`~cytolens.inference.runtimes.BACKENDS`.
        ModelError: If a runtime was asked for a model or device it cannot serve.

    """
    checks = [
        (f"task {task!r} (it runs box and point detectors only)", task == "boxes"),
        (f"{type(network).__name__} (it runs FCOS only; use --backend torch)", isinstance(network, FCOS)),
    ]
    return in_runtime(backend, network, checks, device, checkpoint, OnnxFCOS, int8)


__all__ = ["OPSET", "OUTPUTS", "OnnxFCOS", "box_backend", "cache_dir", "export_onnx"]
