"""ONNX Runtime and OpenVINO: a network exported to ONNX, run on the CPU, its file cached.

Both runtimes read the same ONNX file: ONNX Runtime through an ``InferenceSession``, OpenVINO through
``Core().compile_model`` (its CPU plugin, a latency hint, as many threads as torch uses, not pinned to cores). A
network is exported with ``torch.onnx.export(..., dynamo=False)`` for one input size (the batch size is free) and
cached as ``<sha256 of the checkpoint>-<height>x<width>-opset<N>.onnx`` in :func:`cache_dir`: built on first use (and
again when the cached file does not load), written atomically, never downloaded. Exporting needs the ``onnx``
package; running needs ``onnxruntime`` or ``openvino``.

:data:`RUNTIMES` lists them in the order ``--backend auto`` tries them, fastest first as measured on 2 CPU
cores (``benchmarks/bccd_detection.py`` and ``benchmarks/point_speed.py``).
"""

from __future__ import annotations

import copy
import importlib.util
import io
import logging
import os
import sys
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from cytolens.errors import CytolensError, ModelError
from cytolens.inference.int8 import as_calibrated
from cytolens.io.atomic import write_bytes
from cytolens.io.digest import file_digest
from cytolens.models.card import Int8Calibration

Runner = TypeVar("Runner")

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx", "openvino")
"""Values of ``load_model(..., backend=...)`` and of the ``--backend`` option."""
RUNTIMES = ("openvino", "onnx")
"""The runtimes ``auto`` tries, fastest first (measured on 2 cores; see the module docstring)."""
PACKAGES = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnx")}
"""What each runtime needs installed (``onnx`` to export the network)."""
NAMES = {"onnx": "ONNX Runtime", "openvino": "OpenVINO"}
OPSET = 17


def cache_dir() -> Path:
    """Where exported ONNX files are kept.

    ``$CYTOLENS_CACHE_DIR``, else ``$XDG_CACHE_HOME/cytolens``, else ``~/.cache/cytolens``.
    """
    if os.environ.get("CYTOLENS_CACHE_DIR"):
        return Path(os.environ["CYTOLENS_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cytolens"


def cache_path(key: str, height: int, width: int) -> Path:
    """The cached ONNX file of the network of checkpoint ``key`` (its sha256) for ``height`` x ``width`` inputs."""
    return cache_dir() / f"{key}-{height}x{width}-opset{OPSET}.onnx"


def check_backend(backend: str) -> None:
    """Refuse an unknown backend.

    Raises:
        CytolensError: If ``backend`` is not one of :data:`BACKENDS`.

    """
    if backend not in BACKENDS:
        raise CytolensError(f"unknown backend {backend!r}; use {', '.join(BACKENDS)}")


def missing_packages(runtime: str) -> list[str]:
    """The packages ``runtime`` needs that are not installed."""
    return [name for name in PACKAGES[runtime] if importlib.util.find_spec(name) is None]


def export(network: nn.Module, example: torch.Tensor, inputs: Sequence[str], outputs: Sequence[str]) -> bytes:
    """Export ``network`` (called on ``example``) to ONNX, the batch axis of every input and output free.

    A copy of the network without hooks is traced, so that hooks on the live one (a caller's, a profiler's) neither
    run during the trace nor enter the graph.

    Returns:
        The ONNX model.

    """
    network = copy.deepcopy(network)
    for module in network.modules():
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # norm layers' batch-size checks become constants in the trace: harmless, as the batch axis is free
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            network.eval(),
            (example,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes={name: {0: "batch"} for name in (*inputs, *outputs)},
        )
    return buffer.getvalue()


class Session:
    """An ONNX model compiled by one runtime for the CPU, with one input.

    Args:
        runtime: ``onnx`` (ONNX Runtime) or ``openvino``.
        model: The ONNX model: its bytes, or its file.
        threads: Threads of one inference.

    """

    def __init__(self, runtime: str, model: bytes | str, threads: int) -> None:
        self.runtime = runtime
        if runtime == "openvino":
            # Importing OpenVINO sends a usage event to Google Analytics from a fork of the whole process (about
            # 0.7 GB more resident memory) unless the openvino_telemetry package is missing; while it is hidden,
            # OpenVINO loads its built-in stub instead. (If the host program imported OpenVINO first, its own
            # settings stand.) The package is visible again afterwards, for anyone else who imports it.
            hidden = "openvino_telemetry" not in sys.modules
            if hidden:
                sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
            try:
                import openvino as ov
            finally:
                if hidden:
                    del sys.modules["openvino_telemetry"]

            core = ov.Core()
            # f32: OpenVINO would run bf16 on CPUs that have it, moving outputs well beyond torch's. Unpinned: pinned,
            # every one-thread process (each Dask worker) ran on the first core, so two workers took twice as long
            # per region (2 cores: 6.8 s wall for 3.9 s CPU); one two-thread process ran as fast unpinned
            config = {
                "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                "ENABLE_CPU_PINNING": False,
            }  # fmt: skip
            self._compiled = core.compile_model(core.read_model(model), "CPU", config)
            self._request = self._compiled.create_infer_request()
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def run(self, inputs: np.ndarray, outputs: Sequence[str]) -> list[np.ndarray]:
        """The named ``outputs`` of the model on ``inputs`` (float32, contiguous)."""
        if self.runtime == "openvino":
            found = self._request.infer({0: inputs})
            return [np.asarray(found[self._compiled.output(name)]) for name in outputs]
        return self._session.run(list(outputs), {self._session.get_inputs()[0].name: inputs})


def cached_session(runtime: str, path: Path, build: Callable[[], bytes], threads: int) -> Session:
    """The :class:`Session` of the ONNX file ``path`` (in the cache): read when present and loadable, else built,
    written atomically (the cache never holds a half-written file of ours) and compiled.
    """
    if path.is_file():
        try:
            return Session(runtime, str(path), threads)
        except Exception as error:  # both runtimes raise their own error types for a truncated or damaged file
            log.warning("%s: cached ONNX model does not load (%s); exporting it again", path, type(error).__name__)
    log.info("exporting the network to ONNX for %s (once; cached in %s)", path.stem, path.parent)
    model = build()
    try:
        write_bytes(path, model)
    except OSError as error:
        log.info("could not cache the ONNX model in %s (%s); keeping it in memory", path.parent, error)
    return Session(runtime, model, threads)


MAX_SHAPES = 8
"""Compiled networks one :class:`ShapeSessions` keeps; the least recently used goes first (images of many sizes
would otherwise hold one compiled network each), and is read back from the cache if its size comes again."""


class ShapeSessions:
    """The sessions of one network in one runtime, one per input size, built on first use (the last
    :data:`MAX_SHAPES` sizes used are kept).

    Args:
        key: Names the network in the cache (its checkpoint's sha256).
        runtime: ``onnx`` (ONNX Runtime) or ``openvino``.
        threads: Threads of one inference (default: ``torch.get_num_threads()``).
        strict: Raise :class:`ModelError` when an export or compilation fails, instead of answering ``None``
            (the caller then runs torch).
        int8: Activation ranges from the model card: each export is then quantised to int8 with them (see
            :mod:`cytolens.inference.int8`; a failed quantisation raises :class:`ModelError`).
        source: The checkpoint, named in errors.

    """

    def __init__(
        self,
        key: str,
        runtime: str,
        threads: int | None = None,
        strict: bool = False,
        int8: Int8Calibration | None = None,
        source: str | Path | None = None,
    ) -> None:
        self.key = key
        self.runtime = runtime
        self.threads = threads or torch.get_num_threads()
        self.strict = strict
        self.int8 = int8
        self.source = source
        self._sessions: OrderedDict[tuple[int, int], Session | None] = OrderedDict()

    def get(self, height: int, width: int, build: Callable[[], bytes]) -> Session | None:
        """The session for ``height`` x ``width`` inputs (``build`` exports the float network for them when the cache
        has no loadable file; an int8 model's export is then quantised), or ``None`` when that failed.

        Raises:
            ModelError: If it failed and the sessions are strict.

        """
        key = (height, width)
        if key in self._sessions:
            self._sessions.move_to_end(key)
            return self._sessions[key]
        session: Session | None = None
        try:
            session = cached_session(
                self.runtime,
                cache_path(self.key, height, width),
                lambda: as_calibrated(build(), self.int8, self.source),
                self.threads,
            )
        except ModelError:  # the model itself is wrong (e.g. its int8 ranges): no fallback
            raise
        except Exception as error:  # the exporter and the runtimes raise many kinds of errors
            message = (
                f"{NAMES[self.runtime]}: export or loading failed "
                f"({error.__class__.__name__}: {str(error).splitlines()[0]})"
            )
            if self.strict:
                raise ModelError(message) from error
            log.info("%s; using PyTorch for %dx%d inputs", message, width, height)
        self._sessions[key] = session
        if len(self._sessions) > MAX_SHAPES:
            self._sessions.popitem(last=False)
        return session


def choose_runtime(
    backend: str, checks: Sequence[tuple[str, bool]], device: torch.device, source: str | Path
) -> str | None:
    """The runtime a model runs in: ``backend`` when it names one, the first of :data:`RUNTIMES` that can run the
    model for ``auto``, ``None`` for torch.

    Args:
        backend: One of :data:`BACKENDS`.
        checks: ``(problem, holds)`` pairs: what a runtime needs of the model (task, architecture).
        device: Where the model runs (the runtimes run on the CPU only).
        source: The model, named in messages.

    Raises:
        CytolensError: If ``backend`` is unknown.
        ModelError: If a runtime was asked for by name and cannot run the model (one line saying why).

    """
    check_backend(backend)
    if backend == "torch":
        return None
    checks = [*checks, (f"device {device} (it runs on the CPU only)", device.type == "cpu")]
    problems = [problem for problem, holds in checks if not holds]
    said = []
    for runtime in RUNTIMES if backend == "auto" else (backend,):
        missing = missing_packages(runtime)
        if not problems and not missing:
            return runtime
        needs = [f"missing {' and '.join(missing)} (pip install {' '.join(missing)})"] if missing else []
        if backend != "auto":
            reasons = "; ".join(problems + needs)
            raise ModelError(f"{source}: the {NAMES[runtime]} backend cannot run this model: {reasons}")
        said.append(f"{NAMES[runtime]}: {'; '.join(problems + needs)}")
    # torch for a model no runtime serves is expected; no runtime installed at all is worth a word
    log.log(logging.DEBUG if problems else logging.INFO, "%s: running with PyTorch (%s)", source, "; ".join(said))
    return None


def in_runtime(
    backend: str,
    network: nn.Module,
    checks: Sequence[tuple[str, bool]],
    device: torch.device,
    checkpoint: str | Path,
    runner: Callable[..., Runner],
    int8: Int8Calibration | None = None,
) -> Runner | None:
    """``runner(network, sessions)`` running ``network`` in the runtime :func:`choose_runtime` picks, its
    :class:`ShapeSessions` keyed by the checkpoint's sha256, quantising every export with ``int8`` (the card's
    calibration), and strict unless ``auto`` chose a runtime for a float model (a failed export then raises instead
    of falling back to torch, which for an int8 model would mix int8 and float tiles); or ``None`` for torch, which
    runs an int8-calibrated model in float (said in an info log).
    """
    runtime = choose_runtime(backend, checks, device, checkpoint)
    if runtime is None:
        if int8 is not None:
            log.info("%s: its int8 calibration applies to ONNX Runtime and OpenVINO; PyTorch runs it in float",
                     checkpoint)  # fmt: skip
        return None
    strict = backend != "auto" or int8 is not None  # an int8 model never runs some sizes in float
    return runner(network, ShapeSessions(file_digest(checkpoint), runtime, None, strict, int8, checkpoint))


__all__ = [
    "BACKENDS",
    "MAX_SHAPES",
    "OPSET",
    "RUNTIMES",
    "Session",
    "ShapeSessions",
    "cache_dir",
    "cache_path",
    "cached_session",
    "check_backend",
    "choose_runtime",
    "export",
    "in_runtime",
    "missing_packages",
]
