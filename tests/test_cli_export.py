"""``cytolens export MODEL --onnx FILE``: an ONNX file that ONNX Runtime loads and that gives the boxes torch gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from cytolens.cli.main import app
from cytolens.examples import path as examples_path
from cytolens.inference import onnx_boxes
from cytolens.inference.model import load_model
from cytolens.io.digest import file_digest
from cytolens.io.images import read_image
from cytolens.models.registry import resolve_model

IMAGE = examples_path() / "JPEGImages" / "BloodImage_00007.jpg"

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args: object) -> object:
    return CliRunner().invoke(app, [str(arg) for arg in args], env={"COLUMNS": "300"})


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled blood-cells model exported with the CLI (a few seconds)."""
    path = tmp_path_factory.mktemp("export") / "blood-cells.onnx"
    result = invoke("export", "blood-cells", "--onnx", path, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["input"] == {"name": "images", "shape": ["N", 3, 480, 640]}
    assert summary["classes"] == ["WBC", "RBC", "Platelets"]
    return path


def test_the_file_loads_in_onnx_runtime_and_describes_the_model(exported: Path) -> None:
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    (images,) = session.get_inputs()
    assert images.name == "images" and images.shape[1:] == [3, 480, 640]
    assert [output.name for output in session.get_outputs()] == list(onnx_boxes.OUTPUTS)
    metadata = session.get_modelmeta().custom_metadata_map
    card = json.loads(metadata["cytolens_card"])
    assert card["classes"] == ["WBC", "RBC", "Platelets"] and card["thresholds"]["nms"] == 0.5
    assert json.loads(metadata["input"])["mean"] == [0.5, 0.5, 0.5]
    assert json.loads(metadata["outputs"])["strides"] == [8, 16, 32]


def test_the_file_gives_the_boxes_torch_gives(exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch_model = load_model("blood-cells", device="cpu", backend="torch")
    network = torch_model.network
    batch, _ = network.transform([torch.from_numpy(read_image(IMAGE)).permute(2, 0, 1).float() / 255])
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    outputs = session.run(list(onnx_boxes.OUTPUTS), {"images": batch.tensors.numpy()})
    with torch.no_grad():
        expected = network.head(list(network.backbone(batch.tensors).values()))
    for name, array in zip(onnx_boxes.OUTPUTS, outputs, strict=True):
        np.testing.assert_allclose(array, expected[name].numpy(), atol=1e-3, err_msg=name)

    # cytolens's own ONNX Runtime path, handed this file as its cached export, finds the boxes torch finds
    monkeypatch.setenv("CYTOLENS_CACHE_DIR", str(tmp_path))
    key = file_digest(resolve_model("blood-cells"))
    cached = tmp_path / f"{key}-480x640-opset{onnx_boxes.OPSET}.onnx"
    shutil.copy(exported, cached)
    (found,) = load_model("blood-cells", device="cpu", backend="onnx").predict(IMAGE)
    (reference,) = torch_model.predict(IMAGE)
    assert cached.read_bytes() == exported.read_bytes()  # used as it is, not exported again
    assert found.counts() == reference.counts() == {"WBC": 1, "RBC": 19, "Platelets": 1}
    np.testing.assert_allclose(found.cells.boxes, reference.cells.boxes, atol=0.05)
    np.testing.assert_allclose(found.cells.scores, reference.cells.scores, atol=1e-4)


def test_an_existing_file_is_kept_unless_exist_ok_and_point_models_are_refused(tmp_path: Path) -> None:
    existing = tmp_path / "model.onnx"
    existing.write_bytes(b"earlier")
    result = invoke("export", "blood-cells", "--onnx", existing)
    assert result.exit_code == 1 and existing.read_bytes() == b"earlier"
    assert result.stderr.strip() == f"error: {existing}: exists; add --exist-ok to replace it"
    result = invoke("export", "rbc-morphology-points", "--onnx", tmp_path / "points.onnx")
    assert result.exit_code == 1 and not (tmp_path / "points.onnx").exists()
    assert result.stderr.strip() == (
        "error: rbc-morphology-points: cytolens export --onnx writes FCOS box models only, "
        "not a points model (fcn-lite0)"
    )
