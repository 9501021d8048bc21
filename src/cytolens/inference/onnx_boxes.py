"""ONNX Runtime inference for FCOS box detectors: the network in ONNX Runtime, the rest in torch.

The pre-processing (resize to the model's input size, normalise, pad to a multiple of 32) and the
post-processing (torchvision FCOS ``postprocess_detections`` and ``transform.postprocess``, which maps
boxes back to image pixels) are torchvision's own code, so the only difference from the PyTorch path is
the network's arithmetic (outputs within about 1e-5). The post-processing reads its thresholds (NMS IoU,
candidate score) from the torch model at every call, so thresholds set at run time (see
:func:`cytolens.inference.boxes.set_nms`) apply without exporting again. The network part (backbone + FPN
+ head) is exported with ``torch.onnx.export(..., dynamo=False)`` for one padded input size (height x width;
the batch size is free) and cached as ``<sha256 of the checkpoint>-<height>x<width>-opset<N>.onnx`` in
:func:`cache_dir`: built on first use (and again when the cached file does not load), written atomically,
never downloaded. Exporting needs the ``onnx`` package; running needs ``onnxruntime``.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FCOS

from cytolens.errors import CytolensError, ModelError
from cytolens.io.atomic import write_bytes
from cytolens.io.digest import file_digest

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")
"""Values of ``load_model(..., backend=...)`` and of the ``--backend`` option."""

OPSET = 17
OUTPUTS = ("cls_logits", "bbox_regression", "bbox_ctrness")


def cache_dir() -> Path:
    """Where exported ONNX files are kept.

    ``$CYTOLENS_CACHE_DIR``, else ``$XDG_CACHE_HOME/cytolens``, else ``~/.cache/cytolens``.
    """
    if os.environ.get("CYTOLENS_CACHE_DIR"):
        return Path(os.environ["CYTOLENS_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cytolens"


def _missing_packages() -> list[str]:
    return [name for name in ("onnxruntime", "onnx") if importlib.util.find_spec(name) is None]


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
    buffer = io.BytesIO()
    example = torch.zeros(1, 3, height, width)
    dynamic = {name: {0: "batch"} for name in ("images", *OUTPUTS)}
    with torch.no_grad(), warnings.catch_warnings():
        # norm layers' batch-size checks become constants in the trace: harmless, as the batch axis is free
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            _Network(network).eval(),
            (example,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=["images"],
            output_names=list(OUTPUTS),
            dynamic_axes=dynamic,
        )
    return buffer.getvalue()


class OnnxFCOS:
    """An FCOS model whose network runs in ONNX Runtime; called like the model in eval mode.

    Args:
        network: The torch FCOS model (for pre/post-processing, and the fallback).
        key: Names the model in the cache (the checkpoint's sha256).
        threads: ONNX Runtime intra-op threads (default: ``torch.get_num_threads()``).
        strict: Raise :class:`ModelError` when an export fails, instead of falling back to torch.

    """

    def __init__(self, network: FCOS, key: str, threads: int | None = None, strict: bool = False) -> None:
        self.network = network
        self.key = key
        self.threads = threads or torch.get_num_threads()
        self.strict = strict
        self._sessions: dict[tuple[int, int], Any] = {}
        self._strides = network.backbone.body.feature_info.reduction()

    def _session(self, model: bytes | str) -> Any:
        """An ONNX Runtime session for an ONNX model (its bytes or its file)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def _load(self, height: int, width: int) -> Any:
        """The session for this input size: from the cache, or exported (and cached) when absent or unloadable."""
        path = cache_dir() / f"{self.key}-{height}x{width}-opset{OPSET}.onnx"
        if path.is_file():
            try:
                return self._session(str(path))
            except Exception as error:  # ONNX Runtime raises its own error types for a truncated or damaged file
                log.warning("%s: cached ONNX model does not load (%s); exporting it again", path, type(error).__name__)
        log.info("exporting the network to ONNX for %dx%d inputs (once; cached in %s)", width, height, path.parent)
        model = export_onnx(self.network, height, width)
        try:
            write_bytes(path, model)  # atomic: the cache never holds a half-written file of ours
        except OSError as error:
            log.info("could not cache the ONNX model in %s (%s); keeping it in memory", path.parent, error)
        return self._session(model)

    def session(self, height: int, width: int) -> Any:
        """The ONNX Runtime session for padded inputs of this size, or ``None`` when the export failed."""
        if (height, width) not in self._sessions:
            try:
                self._sessions[height, width] = self._load(height, width)
            except Exception as error:  # the exporter and ONNX Runtime raise many kinds of errors
                message = f"ONNX export or loading failed ({error.__class__.__name__}: {str(error).splitlines()[0]})"
                if self.strict:
                    raise ModelError(message) from error
                log.info("%s; using PyTorch for %dx%d inputs", message, width, height)
                self._sessions[height, width] = None
        return self._sessions[height, width]

    def __call__(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Detect in RGB float images (3, H, W) in [0, 1]: a list of ``{"boxes", "labels", "scores"}`` as FCOS."""
        fcos = self.network
        original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        batch, _ = fcos.transform(images)
        height, width = batch.tensors.shape[-2:]
        session = self.session(height, width)
        if session is None:
            return fcos(images)
        arrays = session.run(list(OUTPUTS), {"images": batch.tensors.contiguous().numpy()})
        outputs = {name: torch.from_numpy(array) for name, array in zip(OUTPUTS, arrays, strict=True)}
        grids = [(height // stride, width // stride) for stride in self._strides]
        per_level = [rows * cols for rows, cols in grids]
        if sum(per_level) != outputs["cls_logits"].shape[1]:
            raise ModelError(f"ONNX outputs do not match the feature grids {grids} of {height}x{width} inputs")
        features = [batch.tensors.new_empty((0, 0, rows, cols)) for rows, cols in grids]
        anchors = fcos.anchor_generator(batch, features)
        split_outputs = {name: list(value.split(per_level, dim=1)) for name, value in outputs.items()}
        split_anchors = [list(anchor.split(per_level)) for anchor in anchors]
        detections = fcos.postprocess_detections(split_outputs, split_anchors, batch.image_sizes)
        return fcos.transform.postprocess(detections, batch.image_sizes, original_sizes)


def box_backend(
    backend: str, network: nn.Module, task: str, device: torch.device, checkpoint: str | Path
) -> OnnxFCOS | None:
    """Choose how a box model runs: an :class:`OnnxFCOS` for ONNX Runtime, or ``None`` for PyTorch.

    ``auto`` picks ONNX Runtime for an FCOS box model on the CPU when ``onnxruntime`` and ``onnx`` are
    installed (and falls back to PyTorch, with an info log, if the export fails); ``onnx`` insists on it.

    Raises:
        CytolensError: If ``backend`` is not one of :data:`BACKENDS`.
        ModelError: If ``onnx`` was asked for a model or device it cannot serve.

    """
    if backend not in BACKENDS:
        raise CytolensError(f"unknown backend {backend!r}; use {', '.join(BACKENDS)}")
    if backend == "torch":
        return None
    unsupported = [
        problem
        for problem, present in (
            (f"task {task!r} (it runs box detectors only)", task == "boxes"),
            (f"{type(network).__name__} (it runs FCOS only; use --backend torch)", isinstance(network, FCOS)),
            (f"device {device} (it runs on the CPU only)", device.type == "cpu"),
        )
        if not present
    ]
    missing = _missing_packages()
    problems = [
        *unsupported,
        *([f"missing {' and '.join(missing)} (pip install {' '.join(missing)})"] if missing else []),
    ]
    if problems:
        if backend == "onnx":
            raise ModelError(f"{checkpoint}: the ONNX backend cannot run this model: {'; '.join(problems)}")
        # PyTorch for a model the ONNX path does not serve is expected; a missing package is worth a word
        level = logging.INFO if missing and not unsupported else logging.DEBUG
        log.log(level, "%s: running with PyTorch: %s", checkpoint, "; ".join(problems))
        return None
    return OnnxFCOS(network, file_digest(checkpoint), strict=backend == "onnx")


__all__ = ["BACKENDS", "OnnxFCOS", "box_backend", "cache_dir", "export_onnx"]
