"""``cytolens export``: write a model in a form other tools run (ONNX), to take it elsewhere."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cytolens.cli.options import JsonOption

if TYPE_CHECKING:
    from cytolens.inference.model import CellModel


def _input_size(cell_model: CellModel) -> tuple[int, int]:
    """The padded input (height, width) to export for: the card's input size, padded as the model pads batches."""
    transform = cell_model.network.transform
    width, height = cell_model.card.input.size or (transform.max_size, transform.min_size[-1])
    step = transform.size_divisible
    return math.ceil(height / step) * step, math.ceil(width / step) * step


def _described(model: bytes, cell_model: CellModel, height: int, width: int) -> bytes:
    """The ONNX ``model`` with what is needed to use it elsewhere in its metadata (``metadata_props``)."""
    import onnx

    transform = cell_model.network.transform
    proto = onnx.load_from_string(model)
    proto.doc_string = (
        f"cytolens {cell_model.source}: backbone, feature pyramid and head of an FCOS box detector, for RGB images "
        f"resized as metadata 'input' says, normalised and padded to {height}x{width}. Boxes come from the outputs "
        "through torchvision's FCOS post-processing (anchors at metadata 'outputs' strides, class-wise NMS at the "
        "card's thresholds.nms, then the card's per-class thresholds.score). For research use only."
    )
    onnx.helper.set_model_props(
        proto,
        {
            "cytolens_card": cell_model.card.to_json(),
            "input": json.dumps({
                "height": height,
                "width": width,
                "layout": "NCHW, RGB, values in [0, 1] then (x - mean) / std",
                "mean": list(transform.image_mean),
                "std": list(transform.image_std),
                "resize": f"keep the aspect ratio, shorter side {transform.min_size[-1]} px, longer side at most "
                f"{transform.max_size} px; pad right and bottom with 0 to {height}x{width}",
            }),
            "outputs": json.dumps({
                "strides": list(cell_model.network.backbone.body.feature_info.reduction()),
                "classes": list(cell_model.classes),
                "decode": "torchvision.models.detection.FCOS.postprocess_detections",
            }),
        },
    )
    return proto.SerializeToString()


def export(
    model: Annotated[str, typer.Argument(help="Bundled model name or checkpoint file.", metavar="MODEL")],
    onnx: Annotated[Path, typer.Option("--onnx", help="Write the model as this ONNX file.", dir_okay=False)],
    exist_ok: Annotated[bool, typer.Option("--exist-ok", help="Replace the file if it exists.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write a box model as an ONNX file that ONNX Runtime and other tools run, to take it elsewhere.

    The file holds the network (backbone, feature pyramid and head of an FCOS detector) for one input
    size, the model's (e.g. 512x384); its metadata holds the model card (classes, thresholds, µm/px),
    how to resize and normalise images, and how its outputs become boxes (torchvision's FCOS
    post-processing, as cytolens's own --backend onnx does). Written atomically; an existing file is
    replaced only with --exist-ok.
    """
    from cytolens.cli.output import print_json, print_table
    from cytolens.errors import DataError, ModelError
    from cytolens.inference.model import load_model
    from cytolens.inference.onnx_boxes import OUTPUTS, export_onnx
    from cytolens.io.atomic import write_bytes

    if onnx.is_dir():
        raise DataError(onnx, "is a folder; give the ONNX file to write")
    if onnx.exists() and not exist_ok:
        raise DataError(onnx, "exists; add --exist-ok to replace it")
    from torchvision.models.detection import FCOS

    cell_model = load_model(model, device="cpu", backend="torch")
    if not isinstance(cell_model.network, FCOS):
        raise ModelError(
            f"{model}: cytolens export --onnx writes FCOS box models only, not a {cell_model.task} model "
            f"({cell_model.card.architecture})"
        )
    height, width = _input_size(cell_model)
    write_bytes(onnx, _described(export_onnx(cell_model.network, height, width), cell_model, height, width))
    summary: dict[str, Any] = {
        "model": model,
        "onnx": str(onnx),
        "megabytes": round(onnx.stat().st_size / 1e6, 1),
        "input": {"name": "images", "shape": ["N", 3, height, width]},
        "outputs": list(OUTPUTS),
        "classes": cell_model.classes,
    }
    if as_json:
        print_json(summary)
        return
    rows = [
        ["file", f"{onnx} ({summary['megabytes']} MB)"],
        ["input", f"images {tuple(summary['input']['shape'])}".replace("'", "")],
        ["outputs", ", ".join(OUTPUTS)],
        ["classes", ", ".join(cell_model.classes)],
    ]
    print_table(f"{model} as ONNX", ["", ""], rows)
