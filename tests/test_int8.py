"""Int8 models: calibration ranges, quantised exports, cards that carry the ranges, int8 predictions close to float
ones, and ``cytolens quantise`` (an untrained fcn-small and three 96x128 crops of Chula RBC-12 images; the bundled
blood-cells FCOS calibrated on its BCCD example).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from scipy.spatial import cKDTree
from torchvision.ops import box_iou
from typer.testing import CliRunner

from conftest import dataset_path
from cytolens import examples
from cytolens.cli.main import app
from cytolens.cli.quantise import CalibrationTarget
from cytolens.errors import ModelError
from cytolens.inference.int8 import calibrate, quantised
from cytolens.inference.model import load_model
from cytolens.inference.onnx_points import OnnxFCN, export_fcn
from cytolens.inference.runtimes import RUNTIMES, ShapeSessions, missing_packages
from cytolens.io.images import read_image
from cytolens.models.card import ModelCard
from cytolens.models.checkpoint import read_card, save_card, save_checkpoint
from cytolens.models.registry import build_architecture
from test_cli import assert_one_line_error

pytestmark = pytest.mark.usefixtures("one_thread")

CARD = {
    "task": "points", "architecture": "fcn-small", "kwargs": {}, "classes": ["a", "b"],
    "thresholds": {"threshold_rel": 0.6, "threshold_abs": 0.0, "min_distance": 12},  # its map is flat: noise peaks
}  # fmt: skip
HEIGHT, WIDTH = 96, 128
MAP_TOLERANCE = 0.1
"""Largest int8 - float proximity difference, as a share of the float map's range (measured: 0.030-0.034 in both
runtimes; an untrained network's map spans only about 3e-4, so uint8 activations cost a few hundredths of it)."""
MATCHED = 0.8
"""Share of the float model's cells the int8 model finds within 2 px (measured: 0.88 ONNX Runtime, 0.92 OpenVINO on
the noise peaks of the untrained map)."""


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    images = dataset_path("chula-rbc-12") / "Dataset"
    return [read_image(images / f"{name}.jpg")[100 : 100 + HEIGHT, 200 : 200 + WIDTH] for name in (10, 100, 101)]


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_architecture("fcn-small", num_classes=2, weights=None).eval()


@pytest.fixture(scope="module")
def calibration(network, crops):
    return calibrate(partial(export_fcn, network), unit_inputs(crops), {"data": "chula crops"})


def unit_inputs(crops: list[np.ndarray]) -> list[np.ndarray]:
    """The crops as a point FCN takes them: ``(1, 3, H, W)`` float32 in 0-1."""
    return [np.ascontiguousarray(crop.transpose(2, 0, 1)[None], dtype=np.float32) / 255 for crop in crops]


@pytest.fixture(scope="module")
def files(network, calibration, tmp_path_factory) -> dict[str, Path]:
    """The untrained network as a float checkpoint and as its int8-calibrated copy."""
    folder = tmp_path_factory.mktemp("int8")
    save_checkpoint(folder / "float.pt", network, CARD)
    stored = read_card(folder / "float.pt")
    save_card(folder / "int8.pt", replace(stored.card, int8=calibration), stored.state)
    return {"float": folder / "float.pt", "int8": folder / "int8.pt"}


@pytest.fixture(scope="module")
def data(crops, tmp_path_factory) -> Path:
    """A points CSV listing two of the crops, without points."""
    folder = tmp_path_factory.mktemp("crops")
    for index, crop in enumerate(crops[:2]):
        Image.fromarray(crop).save(folder / f"crop{index}.png")
    return points_csv(folder / "crops.csv", "crop0.png", "crop1.png")


def points_csv(path: Path, *images: str) -> Path:
    path.write_text("image,x,y,class\n" + "".join(f"{image},,,\n" for image in images))
    return path


def invoke(*args: object) -> object:
    return CliRunner().invoke(app, [str(arg) for arg in args], env={"COLUMNS": "300"})


def test_calibration_ranges_are_ordered_and_keep_the_output_heads_in_float(calibration):
    assert len(calibration.ranges) > 20
    assert all(low <= high for low, high in calibration.ranges.values())
    assert any("proximity_head" in name for name in calibration.keep_float)
    assert any("class_head" in name for name in calibration.keep_float)
    assert calibration.about == {"data": "chula crops", "size": [WIDTH, HEIGHT]}


def test_an_export_at_another_size_is_quantised_with_float_outputs(network, calibration):
    model = onnx.load_from_string(quantised(export_fcn(network, 64, 96), calibration))
    operators = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= operators
    assert [output.name for output in model.graph.output] == ["proximity", "logits"]
    assert all(output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for output in model.graph.output)
    producers = {output: node.op_type for node in model.graph.node for output in node.output}
    kept = [node for node in model.graph.node if node.name in calibration.keep_float]
    assert len(kept) == len(calibration.keep_float)
    assert all(producers.get(node.input[1]) != "DequantizeLinear" for node in kept if node.op_type == "Conv")


def test_ranges_without_a_weighted_input_are_refused_in_one_line(network, calibration):
    exported = onnx.load_from_string(export_fcn(network, HEIGHT, WIDTH))
    convolutions = [node for node in exported.graph.node if node.op_type == "Conv"]
    weighted = [node.input[0] for node in convolutions if node.name not in calibration.keep_float]
    dropped = next(name for name in reversed(weighted) if name in calibration.ranges)
    ranges = {name: pair for name, pair in calibration.ranges.items() if name != dropped}
    with pytest.raises(ModelError, match="no range for 1 activation") as error:
        quantised(export_fcn(network, HEIGHT, WIDTH), replace(calibration, ranges=ranges))
    assert dropped in str(error.value) and "cytolens quantise" in str(error.value) and "\n" not in str(error.value)


def test_a_card_with_int8_ranges_round_trips(files, calibration):
    assert read_card(files["int8"]).card.int8 == calibration
    assert read_card(files["float"]).card.int8 is None


def test_a_classifier_card_with_int8_ranges_is_refused():
    meta = {
        "task": "patches", "architecture": "lite-classifier", "kwargs": {}, "classes": ["a"],
        "int8": {"ranges": {"x": [0, 1]}},
    }  # fmt: skip
    with pytest.raises(ModelError, match="int8.*point FCNs and FCOS box models only"):
        ModelCard.from_dict(meta, "patches.pt")
    rcnn = {**meta, "task": "boxes", "architecture": "faster-rcnn"}
    with pytest.raises(ModelError, match="not a faster-rcnn boxes model"):
        ModelCard.from_dict(rcnn, "rcnn.pt")


def test_calibration_inputs_match_what_each_network_meets(crops):
    channels_first = [crop.transpose(2, 0, 1) for crop in crops]
    inputs = CalibrationTarget.of("rbc-morphology-points").inputs(channels_first)
    np.testing.assert_array_equal(np.concatenate(inputs), np.concatenate(unit_inputs(crops)))
    boxes = CalibrationTarget.of("blood-cells")
    field = read_image(next((examples.path() / "JPEGImages").glob("*.jpg"))).transpose(2, 0, 1)
    whole, half = boxes.inputs([field, field[:, ::2, ::2]])  # a 320x240 image: resized to the input, as predict does
    assert whole.shape == half.shape == (1, 3, 480, 640)
    assert whole.min() < 0  # normalised by the backbone's mean and spread
    assert boxes.inputs([field, field[:, :240, :320]])[0].shape == (1, 3, 480, 640)  # each at its own scale
    portrait = boxes.inputs([field, field.transpose(0, 2, 1)])  # 640x480 and 480x640: their common centre
    assert {array.shape for array in portrait} == {(1, 3, 480, 480)}
    np.testing.assert_array_equal(portrait[0], whole[..., 80:560])
    assert boxes.tile(1280, 960) == (480, 640) and boxes.tile(480, 640) == (640, 480)


@pytest.mark.parametrize(
    ("ranges", "where"),
    [({"x": [1]}, "int8.ranges.x"), ({"x": [2.0, 1.0]}, "int8.ranges.x"), ([[0, 1]], "int8.ranges"),
     ({}, "int8.ranges"), ({"x": ["a", 1]}, "int8.ranges.x"), ({"x": [float("nan"), 1]}, "int8.ranges.x")],
)  # fmt: skip
def test_malformed_int8_ranges_are_refused_naming_them(files, ranges, where):
    meta = {**read_card(files["float"]).card.to_dict(), "int8": {"ranges": ranges}}
    with pytest.raises(ModelError, match=f"{where}\\b") as error:
        ModelCard.from_dict(meta, "points.pt")
    assert "\n" not in str(error.value)


def centres(model: object, images: list[np.ndarray]) -> list[np.ndarray]:
    return [result.cells.centres for result in model.predict(images)]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_int8_predictions_are_close_to_float(runtime, network, calibration, crops, files):
    if missing_packages(runtime):
        pytest.skip(f"{runtime} is not installed")
    batch = torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32) / 255)
    in_int8 = OnnxFCN(network, ShapeSessions(f"int8-{runtime}", runtime, threads=1, strict=True, int8=calibration))
    with torch.no_grad():
        floats, int8s = network(batch)["proximity"], in_int8(batch)["proximity"]
    spread = float(floats.max() - floats.min())
    assert 0 < float((floats - int8s).abs().max()) <= MAP_TOLERANCE * spread
    expected = centres(load_model(files["float"], device="cpu", backend="torch"), crops)
    found = centres(load_model(files["int8"], device="cpu", backend=runtime), crops)
    distances = np.concatenate([cKDTree(near).query(far)[0] for far, near in zip(expected, found, strict=True)])
    assert len(distances) > 20 and np.mean(distances <= 2) >= MATCHED


def test_torch_runs_an_int8_checkpoint_in_float(files, crops):
    expected = load_model(files["float"], device="cpu", backend="torch").predict(crops)
    found = load_model(files["int8"], device="cpu", backend="torch").predict(crops)
    for first, second in zip(expected, found, strict=True):
        np.testing.assert_array_equal(first.cells.centres, second.cells.centres)
        np.testing.assert_array_equal(first.cells.probabilities, second.cells.probabilities)


def test_quantise_json_summary_and_exist_ok(files, data, tmp_path):
    out = tmp_path / "int8.pt"
    result = invoke("quantise", files["float"], "--data", data, "--format", "points", "--images", 2, "--out", out,
                    "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary.keys() == {"model", "out", "megabytes", "images", "size", "activations", "kept_float"}
    assert summary["images"] == 2 and summary["size"] == [WIDTH, HEIGHT] and summary["out"] == str(out)
    card = read_card(out).card
    assert card.int8 is not None and len(card.int8.ranges) == summary["activations"]
    assert_one_line_error(invoke("quantise", files["float"], "--data", data, "--format", "points", "--out", out),
                          str(out), "--exist-ok")  # fmt: skip
    result = invoke("quantise", files["float"], "--data", data, "--format", "points", "--images", 1, "--out", out,
                    "--exist-ok", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read_card(out).card.int8.about["images"] == 1


def test_quantise_refuses_a_faster_rcnn_in_one_line(data, tmp_path):
    card = {"task": "boxes", "architecture": "faster-rcnn", "kwargs": {}, "classes": ["a", "b"]}
    save_checkpoint(tmp_path / "rcnn.pt", build_architecture("faster-rcnn", num_classes=2, weights=None), card)
    result = invoke("quantise", tmp_path / "rcnn.pt", "--data", data, "--format", "points", "--out", tmp_path / "x.pt")
    assert_one_line_error(result, "rcnn.pt", "FCOS", "faster-rcnn")
    assert not (tmp_path / "x.pt").exists()


@pytest.fixture(scope="module")
def box_int8(tmp_path_factory) -> Path:
    """The bundled blood-cells calibrated on two of its three example fields."""
    out = tmp_path_factory.mktemp("boxes") / "blood-cells-int8.pt"
    result = invoke("quantise", "blood-cells", "--data", examples.path(), "--format", "voc", "--images", 2,
                    "--out", out, "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["images"] == 2 and summary["size"] == [640, 480] and summary["activations"] > 100
    return out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_int8_box_model_finds_the_cells_float_finds(runtime, box_int8):
    if missing_packages(runtime):
        pytest.skip(f"{runtime} is not installed")
    fields = sorted((examples.path() / "JPEGImages").glob("*.jpg"))
    expected = load_model("blood-cells", device="cpu", backend="torch").predict(fields)
    found = load_model(box_int8, device="cpu", backend=runtime).predict(fields)
    for first, second in zip(expected, found, strict=True):
        for name in first.classes:
            assert abs(first.counts()[name] - second.counts()[name]) <= 2, (first.path, name)
        overlaps = box_iou(torch.from_numpy(first.cells.boxes), torch.from_numpy(second.cells.boxes))
        assert float((overlaps.max(dim=1).values >= 0.7).float().mean()) >= 0.9


def test_quantising_leaves_a_root_logger_without_handlers_alone(box_int8, monkeypatch):
    """ONNX Runtime warns with ``logging.warning`` on each GroupNorm weight of an FCOS head, which gives a root logger
    without handlers a stderr handler for good: every later warning of the run would print twice."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # as in the CLI (pytest's own handlers hide the effect)
    target = CalibrationTarget.of(str(box_int8))
    quantised(target.export(128, 160), read_card(box_int8).card.int8)
    assert root.handlers == []


def test_torch_runs_an_int8_box_model_in_float(box_int8):
    field = next((examples.path() / "JPEGImages").glob("*.jpg"))
    expected = load_model("blood-cells", device="cpu", backend="torch").predict(field)[0]
    found = load_model(box_int8, device="cpu", backend="torch").predict(field)[0]
    np.testing.assert_array_equal(expected.cells.boxes, found.cells.boxes)


def test_quantise_refuses_a_folder_as_out(files, data, tmp_path):
    result = invoke("quantise", files["float"], "--data", data, "--format", "points", "--out", tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output  # a usage error
    assert f"'{tmp_path}' is a directory" in result.output


def test_quantise_names_data_without_images_or_an_unreadable_image(files, data, tmp_path):
    empty = points_csv(tmp_path / "empty.csv")
    result = invoke("quantise", files["float"], "--data", empty, "--format", "points", "--out", tmp_path / "x.pt")
    assert_one_line_error(result, "empty.csv")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    broken = points_csv(tmp_path / "broken.csv", "broken.png")
    result = invoke("quantise", files["float"], "--data", broken, "--format", "points", "--out", tmp_path / "x.pt")
    assert_one_line_error(result, "broken.png")
    assert not (tmp_path / "x.pt").exists()


def test_an_int8_card_missing_a_range_is_refused_by_a_named_runtime(network, calibration, data, tmp_path):
    save_checkpoint(tmp_path / "float.pt", network, CARD)
    stored = read_card(tmp_path / "float.pt")
    kept = dict(list(calibration.ranges.items())[1::2])
    save_card(tmp_path / "int8.pt", replace(stored.card, int8=replace(calibration, ranges=kept)), stored.state)
    result = invoke("predict", data.parent / "crop0.png", "--model", tmp_path / "int8.pt", "--backend", RUNTIMES[-1],
                    "--out", tmp_path / "out")  # fmt: skip
    assert_one_line_error(result, "no range for", "cytolens quantise")
