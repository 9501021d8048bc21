"""``cytolens quantise``: calibrate a point FCN or an FCOS box detector for int8 inference in ONNX Runtime and
OpenVINO.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from cytolens.cli.options import DataOption, FormatOption, JsonOption, SplitOption

if TYPE_CHECKING:
    from cytolens.data.annotations import Dataset
    from cytolens.inference.model import CellModel

CALIBRATION_IMAGES = 32
"""Default number of calibration images."""
SMALL = 128
"""Calibration images with a side below this many pixels (at the model's scale) are warned about, by name."""

log = logging.getLogger(__name__)


def _centre(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The ``height`` x ``width`` centre of a channels-first ``image`` (its last two axes)."""
    top, left = (image.shape[-2] - height) // 2, (image.shape[-1] - width) // 2
    return np.ascontiguousarray(image[..., top : top + height, left : left + width])


def calibration_images(
    dataset: Dataset, count: int, tile: Callable[[int, int], tuple[int, int]], model_mpp: float | None
) -> list[np.ndarray]:
    """Up to ``count`` images of ``dataset``, spread evenly over it, each resized to the model's µm/px as ``predict``
    resizes it (when both are known) and cut to its centre tile when larger (``tile(width, height)``: the tile's
    ``(rows, columns)`` for such an image: what the network meets); read one at a time. Each is ``(3, H, W)`` uint8.

    Raises:
        DataError: If an image cannot be read.

    """
    from cytolens.inference.scale import rescaled, scale_factor
    from cytolens.io.images import image_mpp, read_image

    chosen = np.unique(np.linspace(0, len(dataset.images) - 1, min(count, len(dataset.images))).round().astype(int))
    images = []
    for index in chosen:
        image = dataset.images[index]
        factor = scale_factor(image.mpp or image_mpp(image.path), model_mpp)
        pixels = rescaled(read_image(image.path), factor).transpose(2, 0, 1)
        if min(pixels.shape[1:]) < SMALL:
            log.warning("%s: %dx%d pixels at the model's scale: a small image to calibrate on (the network meets it "
                        "cut or resized; its ranges may not hold for others)", image.path, pixels.shape[2],
                        pixels.shape[1])  # fmt: skip
        rows, columns = tile(pixels.shape[2], pixels.shape[1])
        images.append(_centre(pixels, min(rows, pixels.shape[1]), min(columns, pixels.shape[2])))
    return images


class CalibrationTarget:
    """What calibration needs of a point FCN or an FCOS box detector: its tile, its inputs, its ONNX export.

    Args:
        cell_model: The model, loaded to run in torch.

    """

    def __init__(self, cell_model: CellModel) -> None:
        self.model = cell_model
        self.card = cell_model.card
        self.network = cell_model.network.float().eval()

    @classmethod
    def of(cls, model: str) -> CalibrationTarget:
        """The point FCN or FCOS detector ``model`` names (a bundled name or a checkpoint).

        Raises:
            ModelError: If it is another kind of model.

        """
        from torchvision.models.detection import FCOS

        from cytolens.errors import ModelError
        from cytolens.inference.model import CellModel, load_model
        from cytolens.models.point_fcn import PointFCN

        cell_model = load_model(model, device="cpu", backend="torch")
        if isinstance(cell_model, CellModel) and isinstance(cell_model.network, PointFCN | FCOS):
            return cls(cell_model)
        kind = (
            f"a {cell_model.card.architecture} {cell_model.task} model"
            if isinstance(cell_model, CellModel)
            else "a detect -> classify pipeline"
        )
        raise ModelError(f"{model}: cytolens quantise calibrates point FCNs and FCOS box detectors only, not {kind}")

    @property
    def points(self) -> bool:
        """Whether it is a point FCN (else an FCOS detector)."""
        return self.card.task == "points"

    def tile(self, width: int, height: int) -> tuple[int, int]:
        """``(rows, columns)`` of the model's tile for a ``width`` x ``height`` image (the image itself if it does not
        tile).
        """
        if self.points:
            side = self.model.predictor.tile_size
            return side, side
        tiling = self.model.predictor.tiling
        return (height, width) if tiling is None else tiling.shape(width, height)

    def inputs(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """``(3, H, W)`` uint8 crops as the network takes them (``(1, 3, H, W)`` float32): a point FCN's 0-1 tiles, a
        detector's images resized to its input, normalised and padded as its transform does; then cut to their
        common centre.
        """
        import torch

        tensors = [torch.from_numpy(crop).float().div(255) for crop in crops]
        if not self.points:
            with torch.no_grad():
                tensors = [self.network.transform([tensor])[0].tensors[0] for tensor in tensors]
        height = min(tensor.shape[-2] for tensor in tensors)
        width = min(tensor.shape[-1] for tensor in tensors)
        return [_centre(tensor[None].numpy(), height, width) for tensor in tensors]

    def export(self, height: int, width: int) -> bytes:
        """The network in ONNX for ``height`` x ``width`` inputs, as the runtimes run it."""
        if self.points:
            from cytolens.inference.onnx_points import export_fcn

            return export_fcn(self.network, height, width)
        from cytolens.inference.onnx_boxes import export_onnx

        return export_onnx(self.network, height, width)


def quantise(
    model: Annotated[
        str, typer.Argument(help="Bundled point or FCOS box model name, or checkpoint file.", metavar="MODEL")
    ],
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
    """Calibrate a point FCN or an FCOS box model for int8: --backend openvino or onnx then runs it with int8
    kernels.

    The range of every activation of the network is measured on --images images of --data (at the
    model's scale, like the images it will see; each cut to their common centre, at most one tile) and
    stored in the model card of --out, a copy of MODEL with the same weights (written atomically). Every
    export of the network is then quantised with those ranges (int8 weights per output channel, uint8
    activations; a point FCN's output heads and the layer feeding them kept in float). With --backend
    torch, --out runs like MODEL, in float.
    Measure the int8 model with `cytolens evaluate` before using it: the bundled rbc-morphology-points
    calibrated on 32 Chula training images lost 0.004 detection F1 on the test split.
    """
    from cytolens.cli.output import print_json, print_table
    from cytolens.errors import DataError
    from cytolens.inference.int8 import calibrate
    from cytolens.io.spec import load_data
    from cytolens.models.checkpoint import read_card, save_card
    from cytolens.models.registry import BUNDLED_DIR, resolve_model

    if out.exists() and not exist_ok:
        raise DataError(out, "exists; add --exist-ok to replace it")
    if out.resolve().parent == BUNDLED_DIR.resolve():
        raise DataError(out, "is in cytolens' bundled models folder; write the calibrated copy elsewhere")
    dataset = load_data(data, fmt=fmt, split=split)  # before the model: bad data is said at once
    if not dataset.images:
        raise DataError(data, f"holds no image{'' if split is None else f' in split {split}'} to calibrate on")
    network = CalibrationTarget.of(model)
    crops = calibration_images(dataset, images, network.tile, network.card.input.mpp)
    inputs = network.inputs(crops)
    about: dict[str, Any] = {"data": str(data), "split": split, "images": len(crops)}
    calibration = calibrate(network.export, inputs, about)
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
