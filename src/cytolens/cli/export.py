"""``cytolens export``: write a model in a form other tools run (ONNX), a detector and a classifier as one
pipeline file, or an annotation store's expert labels as a dataset.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

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


def _export_onnx(model: str, onnx: Path) -> dict[str, Any]:
    """Write ``model`` as the ONNX file ``onnx``; its summary."""
    from torchvision.models.detection import FCOS

    from cytolens.errors import ModelError
    from cytolens.inference.model import CellModel, load_model
    from cytolens.inference.onnx_boxes import OUTPUTS, export_onnx
    from cytolens.io.atomic import write_bytes

    cell_model = load_model(model, device="cpu", backend="torch")
    if not isinstance(cell_model, CellModel):
        raise ModelError(
            f"{model}: a pipeline (a {cell_model.task} detector + a patch classifier); cytolens export --onnx writes "
            "FCOS box models only"
        )
    if not isinstance(cell_model.network, FCOS):
        raise ModelError(
            f"{model}: cytolens export --onnx writes FCOS box models only, not a {cell_model.task} model "
            f"({cell_model.card.architecture})"
        )
    height, width = _input_size(cell_model)
    write_bytes(onnx, _described(export_onnx(cell_model.network, height, width), cell_model, height, width))
    return {
        "model": model,
        "onnx": str(onnx),
        "megabytes": round(onnx.stat().st_size / 1e6, 1),
        "input": {"name": "images", "shape": ["N", 3, height, width]},
        "outputs": list(OUTPUTS),
        "classes": cell_model.classes,
    }


def _export_pipeline(model: str, classifier: str, pipeline: Path) -> dict[str, Any]:
    """Write ``model`` and ``classifier`` as the pipeline file ``pipeline``; its summary."""
    from cytolens.models.checkpoint import read_card, read_stored, save_pipeline
    from cytolens.models.registry import resolve_model

    detector, patches = read_card(resolve_model(model)), read_card(resolve_model(classifier))
    save_pipeline(pipeline, detector, patches)
    stored = read_stored(pipeline)  # as it will be loaded
    return {
        "model": model,
        "classifier": classifier,
        "pipeline": str(pipeline),
        "megabytes": round(pipeline.stat().st_size / 1e6, 1),
        "kind": stored.describe(),
        "classes": list(patches.card.classes),
    }


STORE_FORMATS = ("coco", "points", "voc", "yolo")
"""The formats a store's labels are exported in."""
SPLIT_FORMATS = ("voc", "yolo")
"""Those of them that hold splits (--val-fraction)."""


def _export_store(
    store: str, images: Path | None, fmt: str | None, out: Path | None, val_fraction: float | None, seed: int,
    exist_ok: bool,
) -> dict[str, Any]:
    """Write the labels of ``store`` as a dataset; its summary."""
    from cytolens.io.validation import check_number
    from cytolens.store.dataset import open_source
    from cytolens.store.export import export_labels

    for value, option in ((fmt, "--format"), (out, "--out"), (images, "--images")):
        if value is None:
            raise typer.BadParameter("exporting a --store needs --format, --out and --images", param_hint=f"'{option}'")
    if val_fraction is not None:
        if fmt not in SPLIT_FORMATS:
            raise typer.BadParameter(f"{fmt} holds no splits (voc and yolo do)", param_hint="'--val-fraction'")
        check_number(val_fraction, "--val-fraction", low=0, low_open=True, high=1, high_open=True)
    with open_source(store, images) as opened:
        written = export_labels(opened, fmt, out, val_fraction=val_fraction, seed=seed, exist_ok=exist_ok)
        name = opened.name
    return {
        "store": name,
        "format": fmt,
        "out": str(out),
        "images": written.images,
        "cells": written.cells,
        "classes": written.classes,
        "splits": written.splits,
        "dropped": written.dropped,
    }


def export(
    model: Annotated[
        str | None, typer.Argument(help="Bundled model name or checkpoint file (not with --store).", metavar="MODEL")
    ] = None,
    onnx: Annotated[
        Path | None, typer.Option("--onnx", help="Write the model as this ONNX file.", dir_okay=False)
    ] = None,
    pipeline: Annotated[
        Path | None,
        typer.Option(
            "--pipeline", dir_okay=False,
            help="Write MODEL (a detector) and --classifier (a patch classifier of the cells it finds) as this one "
            "pipeline file, which --model then takes like a model.",
        ),
    ] = None,
    classifier: Annotated[
        str | None, typer.Option("--classifier", help="The patch classifier of a --pipeline (bundled name or file).")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store", metavar="PATH|URL",
            help="Write the expert labels of this annotation store (a SQLite file or a database URL) as a dataset in "
            "--format to --out.",
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option("--images", help="The folder the store's image paths are relative to (as given to review).",
                     file_okay=False),
    ] = None,
    fmt: Annotated[
        Literal[STORE_FORMATS] | None, typer.Option("--format", "-f", help="The dataset format of a --store export.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="The dataset folder of a --store export.", file_okay=False)
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(
            "--val-fraction",
            help="With --store: write splits train and val, val this seeded fraction of the images (voc, yolo) "
            "(default: no splits).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="The seed of --val-fraction.")] = 0,
    exist_ok: Annotated[bool, typer.Option("--exist-ok", help="Replace the file (or --out) if it exists.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write a box model as an ONNX file that ONNX Runtime and other tools run, to take it elsewhere; or a detector
    and a patch classifier as one pipeline file (detect -> classify); or an annotation store's expert labels as a
    dataset (--store).

    The ONNX file holds the network (backbone, feature pyramid and head of an FCOS detector) for one input
    size, the model's (e.g. 640x480); its metadata holds the model card (classes, thresholds, µm/px),
    how to resize and normalise images, and how its outputs become boxes (torchvision's FCOS
    post-processing, as cytolens's own --backend onnx does). A pipeline file holds both models' weights
    and cards as they are stored (plain tensors and JSON, read without running code). Written atomically;
    an existing file is replaced only with --exist-ok.

    --store S --images DIR --format coco|points|voc|yolo --out OUT writes every labelled image of the store
    with its current labels, the images placed inside OUT (hard links, else copies), so that
    `cytolens train --data OUT --format F` reads it back; points get every cell by its centre, the box formats
    only the cells with boxes (what a format cannot hold is counted). OUT is written whole or not at all.
    """
    from cytolens.cli.output import print_json, print_table
    from cytolens.errors import DataError

    if store is not None:
        if model is not None or onnx is not None or pipeline is not None or classifier is not None:
            raise typer.BadParameter("--store exports labels: give no MODEL, --onnx, --pipeline or --classifier",
                                     param_hint="'--store'")
        summary = _export_store(store, images, fmt, out, val_fraction, seed, exist_ok)
        if as_json:
            print_json(summary)
            return
        rows = [
            ["written", f"{summary['images']} images, {summary['cells']} labelled cells"],
            ["classes", ", ".join(summary["classes"])],
            ["splits", ", ".join(f"{name} {count}" for name, count in summary["splits"].items()) or "none"],
            ["dropped", ", ".join(f"{count} {kind}" for kind, count in summary["dropped"].items()) or "nothing"],
        ]
        print_table(f"{summary['store']} as {fmt} in {out}", ["", ""], rows)
        return
    for value, option in ((images, "--images"), (fmt, "--format"), (out, "--out"), (val_fraction, "--val-fraction")):
        if value is not None:
            raise typer.BadParameter("only a --store export takes it", param_hint=f"'{option}'")
    if model is None:
        raise typer.BadParameter("give the MODEL to export (or --store)", param_hint="MODEL")
    if (onnx is None) == (pipeline is None):
        raise typer.BadParameter("give either --onnx or --pipeline", param_hint="'--onnx' / '--pipeline'")
    if (classifier is None) != (onnx is not None):
        problem = "a --pipeline needs --classifier" if onnx is None else "--onnx takes no --classifier"
        raise typer.BadParameter(problem, param_hint="'--classifier'")
    target = onnx or pipeline
    if target.is_dir():
        raise DataError(target, f"is a folder; give the {'ONNX' if onnx else 'pipeline'} file to write")
    if target.exists() and not exist_ok:
        raise DataError(target, "exists; add --exist-ok to replace it")
    summary = _export_onnx(model, onnx) if onnx is not None else _export_pipeline(model, classifier, pipeline)
    if as_json:
        print_json(summary)
    elif onnx is not None:
        rows = [
            ["file", f"{onnx} ({summary['megabytes']} MB)"],
            ["input", f"images {tuple(summary['input']['shape'])}".replace("'", "")],
            ["outputs", ", ".join(summary["outputs"])],
            ["classes", ", ".join(summary["classes"])],
        ]
        print_table(f"{model} as ONNX", ["", ""], rows)
    else:
        rows = [
            ["file", f"{pipeline} ({summary['megabytes']} MB)"],
            ["pipeline", summary["kind"]],
            ["classes", ", ".join(summary["classes"])],
        ]
        print_table(f"{model} + {classifier} as a pipeline", ["", ""], rows)
