"""Int8 networks (point FCNs, FCOS box detectors): calibrate once on real images, quantise every export with the
stored ranges.

Static int8 quantisation needs the range of every activation of the network. :func:`calibrate` measures them
once on a few images (ONNX Runtime's MinMax calibrator over the network as :mod:`cytolens.inference.onnx_points`
or :mod:`cytolens.inference.onnx_boxes` exports it) and returns them as an
:class:`~cytolens.models.card.Int8Calibration`, which ``cytolens quantise``
stores in the model card (plain JSON: tensor name to lowest and highest value). :func:`quantised` turns each
export of the network, whatever its input size, into its int8 form with those ranges (ONNX Runtime's QDQ
quantisation: int8 weights per output channel, uint8 activations), which OpenVINO and ONNX Runtime run with int8
kernels. The nodes that write the network's outputs (a point FCN's proximity map and class logits) and the layer
feeding them stay in float (:func:`kept_float`), so that the maps keep their fine steps: peaks would otherwise tie on
plateaus of 1/255.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.errors import ModelError
from cytolens.models.card import Int8Calibration

OUTPUT_ACTIVATIONS = ("Sigmoid", "Softmax", "Relu")
"""Elementwise nodes that may sit between an output head's convolution and a graph output (kept in float too)."""
WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
"""The nodes int8 pays for: each needs the range of its input."""


def kept_float(model: Any) -> list[str]:
    """The nodes of ONNX ``model`` to leave in float: those that write its outputs (with the convolution feeding an
    output activation, :data:`OUTPUT_ACTIVATIONS`), and the weighted layer (:data:`WEIGHTED`) that feeds each of
    them, the last shared layer of a point FCN (quantised, it cost 0.003 more detection F1 on Chula RBC-12; kept in
    float, no time measurable on a loaded machine).
    """
    producers = {output: node for node in model.graph.node for output in node.output}
    heads = []
    for output in model.graph.output:
        node = producers.get(output.name)
        while node is not None:
            heads.append(node)
            node = producers.get(node.input[0]) if node.op_type in OUTPUT_ACTIVATIONS else None
    kept = [node.name for node in heads]
    for head in heads:
        node = producers.get(head.input[0]) if head.op_type in WEIGHTED else None
        while node is not None and node.op_type not in WEIGHTED:
            node = producers.get(node.input[0]) if node.input else None
        if node is not None and node.name not in kept:
            kept.append(node.name)
    return kept


def shape_arithmetic(model: Any) -> list[str]:
    """The nodes of ONNX ``model`` that compute on its input's shape (``Shape`` and what reads only its results and
    constants: the padding to a multiple of the stride, the sizes of upsampling). They stay in float: quantised with
    ranges measured at one input size, they would pad and resize another size wrongly.
    """
    constants = {item.name for item in model.graph.initializer}
    marked: set[str] = set()
    found = []
    for node in model.graph.node:  # ONNX nodes are in topological order
        inputs = [name for name in node.input if name and name not in constants]
        if node.op_type == "Constant" and not inputs:
            constants.update(node.output)
        elif node.op_type == "Shape" or (inputs and all(name in marked for name in inputs)):
            marked.update(node.output)
            found.append(node.name)
    return found


def _not_from_quantisation(record: logging.LogRecord) -> bool:
    """Whether a log record comes from elsewhere than ONNX Runtime's quantisation tool."""
    parts = Path(record.pathname).parts
    return not ("onnxruntime" in parts and "quantization" in parts)


@contextmanager
def _quiet_quantisation() -> Iterator[None]:
    """Drop the warnings that ONNX Runtime's quantisation tool logs on the root logger while it runs (one per
    GroupNorm weight of an FCOS head: "Axis 1 is out-of-range for weight ... with rank 1", a note that 1-D weights
    are quantised per tensor), which would otherwise reach the user at every export. Its ``logging.warning`` would
    also give a root logger without handlers a stderr handler for good (``logging.basicConfig``), printing every
    later warning of the process twice: a :class:`logging.NullHandler` stands in while it runs.
    """
    root = logging.getLogger()
    guard = None if root.handlers else logging.NullHandler()
    if guard is not None:
        root.addHandler(guard)
    root.addFilter(_not_from_quantisation)
    try:
        yield
    finally:
        root.removeFilter(_not_from_quantisation)
        if guard is not None:
            root.removeHandler(guard)


def _prepared(model: bytes, folder: Path) -> Path:
    """``model`` written to ``folder`` and pre-processed for quantisation (shapes inferred, graph optimised)."""
    from onnxruntime.quantization import quant_pre_process

    raw, prepared = folder / "float.onnx", folder / "prepared.onnx"
    raw.write_bytes(model)
    quant_pre_process(str(raw), str(prepared), skip_symbolic_shape=True)
    return prepared


class _Images:
    """ONNX Runtime's calibration reader over the network's ``(1, 3, H, W)`` float32 inputs (one per image)."""

    def __init__(self, inputs: Sequence[np.ndarray], name: str) -> None:
        self._left = iter(inputs)
        self._name = name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._left, None)
        return None if batch is None else {self._name: batch}


def calibrate(
    export: Callable[[int, int], bytes], inputs: Sequence[np.ndarray], about: dict[str, Any] | None = None
) -> Int8Calibration:
    """Measure the activation ranges of a network on ``inputs``.

    Args:
        export: The network as ONNX for ``height`` x ``width`` inputs (``export_fcn`` of
            :mod:`~cytolens.inference.onnx_points` or ``export_onnx`` of :mod:`~cytolens.inference.onnx_boxes`).
        inputs: What the network meets, as the export takes it: ``(1, 3, H, W)`` float32 arrays, all of one size
            (the export's; a point FCN's 0-1 RGB tiles, an FCOS detector's normalised padded images).
        about: What they are (data set, split, count...), recorded with the ranges.

    Returns:
        The ranges, with the output heads to keep in float.

    Raises:
        ModelError: If no input is given or the inputs differ in shape.

    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    if not inputs or len({array.shape for array in inputs}) != 1:
        raise ModelError("int8 calibration needs one or more inputs of one shape")
    height, width = inputs[0].shape[-2:]
    with tempfile.TemporaryDirectory(prefix="cytolens-int8-") as folder, _quiet_quantisation():
        prepared = _prepared(export(height, width), Path(folder))
        graph = onnx.load(str(prepared))
        calibrator = create_calibrator(
            prepared,
            augmented_model_path=str(Path(folder) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.MinMax,
        )
        calibrator.collect_data(_Images(inputs, graph.graph.input[0].name))
        found = calibrator.compute_data()
    ranges = {
        name: (float(np.min(data.range_value[0])), float(np.max(data.range_value[1]))) for name, data in found.items()
    }
    return Int8Calibration(
        ranges=ranges, keep_float=tuple(kept_float(graph)), about={**(about or {}), "size": [width, height]}
    )


def as_calibrated(model: bytes, calibration: Int8Calibration | None, source: str | Path | None = None) -> bytes:
    """Float export ``model`` as the model card says to run it: unchanged without a calibration, else
    :func:`quantised`.
    """
    return model if calibration is None else quantised(model, calibration, source)


def quantised(model: bytes, calibration: Int8Calibration, source: str | Path | None = None) -> bytes:
    """The int8 form of ONNX ``model`` (an export of the calibrated network, at any input size), quantised with the
    stored ranges (QDQ: int8 weights per output channel, uint8 activations; ``keep_float`` nodes left alone).

    Args:
        model: The float export.
        calibration: The model card's ranges.
        source: The checkpoint, named in errors.

    Raises:
        ModelError: If the ranges do not cover the model's activations or ``keep_float`` names nodes the export
            does not have (calibrated on another export of it, e.g. by another version of PyTorch: run
            ``cytolens quantise`` again), or the quantisation fails. Callers never fall back to float: some tile
            sizes in float would mix int8 and float cells in one run.

    """
    where = f"{source}: " if source else ""
    try:
        return _quantised(model, calibration)
    except ModelError as error:
        raise ModelError(f"{where}{error}") from None
    except Exception as error:
        first = str(error).splitlines()[0] if str(error) else ""
        raise ModelError(f"{where}int8 quantisation failed ({type(error).__name__}: {first})") from None


def _quantised(model: bytes, calibration: Int8Calibration) -> bytes:
    """:func:`quantised` without its error wording."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        TensorData,
        TensorsData,
        quantize_static,
        save_tensors_data,
    )

    with tempfile.TemporaryDirectory(prefix="cytolens-int8-") as folder, _quiet_quantisation():
        prepared = _prepared(model, Path(folder))
        graph = onnx.load(str(prepared))
        unknown = sorted(set(calibration.keep_float) - {node.name for node in graph.graph.node})
        if unknown:  # a hand-edited or foreign card: quantising would silently leave the heads in int8
            raise ModelError(
                f"the int8 calibration keeps {len(unknown)} node(s) in float that this export does not have (e.g. "
                f"{unknown[0]}); run cytolens quantise again with this version of cytolens and PyTorch"
            )
        needed = {item.name for item in graph.graph.input} | {
            node.input[0]
            for node in graph.graph.node
            if node.op_type in WEIGHTED and node.name not in calibration.keep_float
        }
        missing = sorted(needed - set(calibration.ranges))
        if missing:
            raise ModelError(
                f"the int8 calibration has no range for {len(missing)} activation(s) of this export (e.g. "
                f"{missing[0]}); run cytolens quantise again with this version of cytolens and PyTorch"
            )
        flat = sorted(name for name in needed if calibration.ranges[name][0] == calibration.ranges[name][1])
        if flat:  # one value for all: every input of that layer would quantise to one step
            raise ModelError(
                f"the int8 calibration gives {len(flat)} activation(s) a range of one value (e.g. {flat[0]}: "
                f"{calibration.ranges[flat[0]][0]}); run cytolens quantise again on images with cells"
            )
        ranges = {
            name: TensorData(lowest=np.float32(low), highest=np.float32(high))
            for name, (low, high) in calibration.ranges.items()
        }
        cache = Path(folder) / "ranges.json"
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, ranges), cache)
        target = Path(folder) / "int8.onnx"
        quantize_static(
            str(prepared), str(target), None, quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=[*calibration.keep_float, *shape_arithmetic(graph)], calibration_cache_path=str(cache),
        )  # fmt: skip
        return target.read_bytes()


__all__ = [
    "OUTPUT_ACTIVATIONS", "WEIGHTED", "as_calibrated", "calibrate", "kept_float", "quantised", "shape_arithmetic"
]
