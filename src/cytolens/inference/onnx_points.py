"""Point FCNs in ONNX Runtime or OpenVINO: the network's forward in the runtime, tiling and peaks unchanged.

:class:`OnnxFCN` stands in for a :class:`~cytolens.models.point_fcn.PointFCN` wherever the network is called
(0-1 RGB ``(B, 3, H, W)`` tiles in; ``proximity`` and ``logits`` out), so the point predictor, its tiling, its
peak decoding and test-time flips run as with torch. The forward pass (normalisation, padding to a multiple of
32 and cropping back included) is exported for each tile size met (the batch size is free) and cached as
:mod:`cytolens.inference.runtimes` says.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cytolens.inference.runtimes import ShapeSessions, export, in_runtime
from cytolens.models.card import Int8Calibration
from cytolens.models.point_fcn import PointFCN

OUTPUTS = ("proximity", "logits")


class _Outputs(nn.Module):
    """A point FCN returning its outputs as a tuple (what the exporter takes)."""

    def __init__(self, network: PointFCN) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        found = self.network(images)
        return found["proximity"], found["logits"]


def export_fcn(network: PointFCN, height: int, width: int) -> bytes:
    """The forward pass of point FCN ``network`` in ONNX for ``height`` x ``width`` inputs (batch free): input
    ``images`` (0-1 RGB ``(N, 3, H, W)``), outputs ``proximity`` (N, 1, H, W) and ``logits`` (N, C, H, W).
    """
    return export(_Outputs(network), torch.zeros(1, 3, height, width), ["images"], OUTPUTS)


class OnnxFCN(nn.Module):
    """A point FCN whose forward pass runs in ONNX Runtime or OpenVINO; called like the network in eval mode.

    Args:
        network: The torch point FCN (the fallback, and what Monte-Carlo dropout passes run).
        sessions: The runtime's compiled exports of it, one per tile size (int8 when its card has a calibration).

    """

    def __init__(self, network: PointFCN, sessions: ShapeSessions) -> None:
        super().__init__()
        self.network = network
        self.sessions = sessions
        self.runtime = sessions.runtime

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Proximity map and class logits at the input's resolution, for ``(B, 3, H, W)`` images in 0-1."""
        height, width = (int(side) for side in images.shape[-2:])
        session = self.sessions.get(height, width, lambda: export_fcn(self.network, height, width))
        if session is None:
            return self.network(images)
        proximity, logits = session.run(images.float().contiguous().numpy(), OUTPUTS)
        return {"proximity": torch.from_numpy(proximity), "logits": torch.from_numpy(logits)}


def point_backend(
    backend: str, network: nn.Module, device: torch.device, checkpoint: str | Path, int8: Int8Calibration | None = None
) -> nn.Module:
    """Choose how a point model runs: an :class:`OnnxFCN` for ONNX Runtime or OpenVINO, or ``network`` for PyTorch.

    ``auto`` picks the first runtime of :data:`~cytolens.inference.runtimes.RUNTIMES` that is installed for a
    :class:`~cytolens.models.point_fcn.PointFCN` on the CPU (a float model falling back to PyTorch, with an info log,
    if the export fails); ``onnx`` or ``openvino`` insists on that runtime. With ``int8`` (the card's calibration),
    the runtime runs the network in int8, and a failed export raises; PyTorch runs it in float (said in an info log).

    Raises:
        CytolensError: If ``backend`` is not one of :data:`~cytolens.inference.runtimes.BACKENDS`.
        ModelError: If a runtime was asked for a model or device it cannot serve.

    """
    problem = f"{type(network).__name__} (it runs point FCNs only; use --backend torch)"
    runner = in_runtime(backend, network, [(problem, isinstance(network, PointFCN))], device, checkpoint, OnnxFCN, int8)
    return network if runner is None else runner


__all__ = ["OUTPUTS", "OnnxFCN", "export_fcn", "point_backend"]
