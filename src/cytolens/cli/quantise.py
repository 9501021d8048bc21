"""``cytolens quantise``: calibrate a point model for int8 inference in ONNX Runtime and OpenVINO."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from cytolens.cli.options import DataOption, FormatOption, JsonOption, SplitOption

CALIBRATION_IMAGES = 32
"""Default number of calibration images."""
SMALL = 128
"""Calibration crops with a side below this many pixels are warned about."""

log = logging.getLogger(__name__)


def _centre(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The ``height`` x ``width`` centre of ``image``."""
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return np.ascontiguousarray(image[top : top + height, left : left + width])


def calibration_images(
    data: Path, fmt: str | None, split: str | None, count: int, tile: int, model_mpp: float | None
) -> list[np.ndarray]:
    """Up to ``count`` images of the data, spread evenly over it, each resized to the model's µm/px as ``predict``
    resizes it (when both are known) and cut to their common centre, at most ``tile`` pixels a side (the model's
    tile: what the network meets); read one at a time.

    Raises:
        DataError: If the data holds no image, or an image cannot be read.

    """
    from cytolens.errors import DataError
    from cytolens.inference.scale import rescaled, scale_factor
    from cytolens.io.images import image_mpp, read_image
    from cytolens.io.spec import load_data

    dataset = load_data(data, fmt=fmt, split=split)
    if not dataset.images:
        raise DataError(data, f"holds no image{'' if split is None else f' in split {split}'} to calibrate on")
    chosen = np.unique(np.linspace(0, len(dataset.images) - 1, min(count, len(dataset.images))).round().astype(int))
    images = []
    for index in chosen:
        image = dataset.images[index]
        factor = scale_factor(image.mpp or image_mpp(image.path), model_mpp)
        pixels = rescaled(read_image(image.path), factor)
        images.append(_centre(pixels, min(tile, pixels.shape[0]), min(tile, pixels.shape[1])))
    height = min(image.shape[0] for image in images)
    width = min(image.shape[1] for image in images)
    if min(height, width) < SMALL:
        log.warning("%s: calibrating on %dx%d pixels (its smallest image): ranges may not hold for larger ones",
                    data, width, height)  # fmt: skip
    return [_centre(image, height, width) for image in images]


def quantise(
    model: Annotated[str, typer.Argument(help="Bundled point model name or checkpoint file.", metavar="MODEL")],
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="The int8-calibrated checkpoint to write.", dir_okay=False)],
    fmt: FormatOption = None,
    split: SplitOption = None,
    images: Annotated[
        int, typer.Option("--images", min=1, help="Calibration images, spread evenly over the data.")
    ] = CALIBRATION_IMAGES,
    exist_ok: Annotated[bool, typer.Option("--exist-ok", help="Replace --out if it exists.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Calibrate a point model for int8: --backend openvino or onnx then runs it with int8 kernels.

    The range of every activation of the network is measured on --images images of --data (at the
    model's scale, like the images it will see; each cut to their common centre, at most one tile) and
    stored in the model card of --out, a copy of MODEL with the same weights (written atomically). Every
    export of the network is then quantised with those ranges (int8 weights per output channel, uint8
    activations; the output heads and the layer feeding them kept in float). With --backend torch, --out
    runs like MODEL, in float.
    Measure the int8 model with `cytolens evaluate` before using it: the bundled rbc-morphology-points
    calibrated on 32 Chula training images lost 0.004 detection F1 on the test split.
    """
    from cytolens.cli.output import print_json, print_table
    from cytolens.errors import DataError, ModelError
    from cytolens.inference.int8 import calibrate
    from cytolens.inference.model import CellModel, load_model
    from cytolens.inference.onnx_points import export_fcn
    from cytolens.models.checkpoint import read_card, save_card
    from cytolens.models.point_fcn import PointFCN
    from cytolens.models.registry import resolve_model

    if out.exists() and not exist_ok:
        raise DataError(out, "exists; add --exist-ok to replace it")
    cell_model = load_model(model, device="cpu", backend="torch")
    if not isinstance(cell_model, CellModel) or not isinstance(cell_model.network, PointFCN):
        kind = f"a {cell_model.task} model" if isinstance(cell_model, CellModel) else "a detect -> classify pipeline"
        raise ModelError(f"{model}: cytolens quantise calibrates point FCN checkpoints only, not {kind}")
    network = cell_model.network.float().eval()
    crops = calibration_images(data, fmt, split, images, cell_model.predictor.tile_size, cell_model.card.input.mpp)
    about: dict[str, Any] = {"data": str(data), "split": split, "images": len(crops)}
    calibration = calibrate(lambda height, width: export_fcn(network, height, width), crops, about)
    stored = read_card(resolve_model(model))
    save_card(out, replace(stored.card, int8=calibration), stored.state)
    width, height = calibration.about["size"]
    summary = {
        "model": model,
        "out": str(out),
        "megabytes": round(out.stat().st_size / 1e6, 1),
        "images": len(crops),
        "size": [width, height],
        "activations": len(calibration.ranges),
        "kept_float": list(calibration.keep_float),
    }
    if as_json:
        print_json(summary)
        return
    rows = [
        ["file", f"{out} ({summary['megabytes']} MB)"],
        ["calibrated on", f"{len(crops)} images of {data} ({width}x{height})"],
        ["activation ranges", summary["activations"]],
        ["kept in float", ", ".join(summary["kept_float"])],
        ["runs in int8 with", "--backend openvino or onnx (auto picks OpenVINO when installed)"],
    ]
    print_table(f"{model} calibrated for int8", ["", ""], rows)
