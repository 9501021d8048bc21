"""ONNX Runtime and OpenVINO paths for FCOS box detectors: same detections as PyTorch, cached export, backend choice."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from typer.testing import CliRunner

from cytolens.cli.main import app
from cytolens.errors import CytolensError, ModelError
from cytolens.inference import onnx_boxes, runtimes
from cytolens.inference.evaluate import evaluate_model
from cytolens.inference.model import load_model
from cytolens.io.digest import file_digest
from cytolens.io.images import read_image
from cytolens.io.spec import load_data
from cytolens.models.checkpoint import save_checkpoint
from cytolens.models.registry import build_architecture

CLASSES = ["WBC", "RBC", "Platelets"]
KWARGS = {"fpn_channels": 32, "head_convs": 1, "min_size": 192, "max_size": 256, "score_thresh": 0.18}
INSTALLED = [runtime for runtime in runtimes.RUNTIMES if not runtimes.missing_packages(runtime)]
IDS = ["BloodImage_00000", "BloodImage_00001", "BloodImage_00002"]


def _checkpoint(path: Path, architecture: str = "fcos") -> Path:
    torch.manual_seed(0)
    kwargs = KWARGS if architecture == "fcos" else {"fpn_channels": 32, "min_size": 192, "max_size": 256}
    model = build_architecture(architecture, len(CLASSES), weights=None, **kwargs)
    with torch.no_grad():  # spread the scores so that rankings are not decided by rounding
        for parameter in model.head.classification_head.parameters() if architecture == "fcos" else []:
            parameter.add_(torch.randn_like(parameter) * 0.05)
    meta = {
        "task": "boxes",
        "architecture": architecture,
        "kwargs": kwargs,
        "classes": CLASSES,
        "thresholds": {"score": 0.3},
    }
    save_checkpoint(path, model, meta)
    return path


@pytest.fixture(autouse=True)
def _setup(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("CYTOLENS_CACHE_DIR", str(tmp_path / "cache"))  # each test starts with an empty ONNX cache


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture
def images(bccd) -> list[np.ndarray]:
    pixels = [read_image(bccd / "JPEGImages" / f"{name}.jpg") for name in IDS[:2]]
    return [pixels[0], pixels[1][40:440, 100:400]]  # 640x480 (to 256x192) and 300x400 (to 192x256)


def _assert_same(torch_results, onnx_results) -> None:
    """Same detections up to the order of equal scores: same labels, boxes within 1e-3 px, scores within 1e-5."""
    for expected, found in zip((result.cells for result in torch_results), (result.cells for result in onnx_results),
                               strict=True):
        assert 0 < len(expected.boxes) == len(found.boxes) < 300
        cost = np.abs(expected.boxes[:, None] - found.boxes[None]).max(axis=2)
        cost[expected.labels[:, None] != found.labels[None]] = np.inf
        rows, cols = linear_sum_assignment(np.minimum(cost, 1e9))
        assert cost[rows, cols].max() < 1e-3
        np.testing.assert_allclose(found.scores[cols], expected.scores[rows], atol=1e-5)


@pytest.mark.parametrize("runtime", INSTALLED)
@pytest.mark.parametrize("batch_size", [1, 2])
def test_runtime_detections_equal_torch(checkpoint, images, batch_size, runtime, tmp_path):
    reference = load_model(checkpoint, device="cpu", backend="torch")
    model = load_model(checkpoint, device="cpu", backend=runtime)
    assert (reference.backend, model.backend) == ("torch", runtime)
    _assert_same(
        reference.predict(images, batch_size=batch_size, score_threshold=0.0),
        model.predict(images, batch_size=batch_size, score_threshold=0.0),
    )
    # one ONNX file per padded input size: each image alone, or both padded to the larger of each side
    sizes = ["192x256", "256x192"] if batch_size == 1 else ["256x256"]
    digest = file_digest(checkpoint)
    assert sorted(path.name for path in (tmp_path / "cache").iterdir()) == [
        f"{digest}-{size}-opset{onnx_boxes.OPSET}.onnx" for size in sizes
    ]


def test_network_outputs_match_and_batch_is_free(checkpoint):
    model = load_model(checkpoint, device="cpu", backend="torch").network
    session = ort.InferenceSession(onnx_boxes.export_onnx(model, 96, 128), providers=["CPUExecutionProvider"])
    batch = torch.rand(3, 3, 96, 128)
    found = session.run(None, {"images": batch.numpy()})
    with torch.no_grad():
        expected = model.head(list(model.backbone(batch).values()))
    for name, array in zip(onnx_boxes.OUTPUTS, found, strict=True):
        np.testing.assert_allclose(array, expected[name].numpy(), atol=1e-4)


@pytest.mark.skipif("openvino" not in INSTALLED, reason="OpenVINO is not installed")
def test_openvino_leaves_thread_placement_to_the_system(checkpoint):
    """Pinned, every one-thread process (each Dask worker) ran on the first core: two workers shared one."""
    network = load_model(checkpoint, device="cpu", backend="torch").network
    session = runtimes.Session("openvino", onnx_boxes.export_onnx(network, 64, 64), threads=1)
    assert session._compiled.get_property("ENABLE_CPU_PINNING") is False


def test_export_is_cached_and_reused(checkpoint, images, tmp_path, monkeypatch):
    load_model(checkpoint, device="cpu", backend="onnx").predict(images[:1])
    assert len(list((tmp_path / "cache").glob("*.onnx"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_boxes, "export_onnx", fail)
    load_model(checkpoint, device="cpu", backend="onnx").predict(images[:1])


def test_same_map_with_every_backend(checkpoint, bccd):
    truth = load_data(bccd, fmt="voc", split="test")
    truth.images = truth.images[:2]
    figures = [
        evaluate_model(load_model(checkpoint, device="cpu", backend=backend), truth, progress=False)[0]
        for backend in ("torch", *INSTALLED)
    ]
    for found in figures[1:]:
        assert found["map50"] == pytest.approx(figures[0]["map50"], abs=1e-6)
        assert found["map50_95"] == pytest.approx(figures[0]["map50_95"], abs=1e-6)


def test_failed_export_falls_back_to_torch_with_auto_and_raises_with_onnx(checkpoint, images, monkeypatch, caplog):
    def fail(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(onnx_boxes, "export_onnx", fail)
    model = load_model(checkpoint, device="cpu", backend="auto")
    assert model.backend == INSTALLED[0]
    with caplog.at_level(logging.INFO, logger="cytolens.inference.runtimes"):
        results = model.predict(images[:1], score_threshold=0.0)
    assert "using PyTorch" in caplog.text and "unsupported operator" in caplog.text
    _assert_same(
        load_model(checkpoint, device="cpu", backend="torch").predict(images[:1], score_threshold=0.0), results
    )
    with pytest.raises(ModelError, match="ONNX Runtime: export or loading failed"):
        load_model(checkpoint, device="cpu", backend="onnx").predict(images[:1])


def test_backend_choice(checkpoint, tmp_path, monkeypatch, caplog):
    assert load_model(checkpoint, device="cpu").backend == INSTALLED[0]
    rcnn = _checkpoint(tmp_path / "rcnn.pt", "faster-rcnn")
    assert load_model(rcnn, device="cpu", backend="auto").backend == "torch"
    with pytest.raises(ModelError, match="FCOS only"):
        load_model(rcnn, device="cpu", backend="onnx")
    with pytest.raises(CytolensError, match="unknown backend"):
        load_model(checkpoint, device="cpu", backend="tensorrt")
    monkeypatch.setattr(runtimes, "missing_packages", lambda runtime: ["openvino"] if runtime == "openvino" else [])
    assert load_model(checkpoint, device="cpu", backend="auto").backend == "onnx"
    with pytest.raises(ModelError, match=r"^.*tiny.pt: the OpenVINO backend cannot run this model: missing openvino "
                                         r"\(pip install openvino\)$"):
        load_model(checkpoint, device="cpu", backend="openvino")
    monkeypatch.setattr(runtimes, "missing_packages", lambda runtime: ["onnx"])
    with caplog.at_level(logging.INFO, logger="cytolens.inference.runtimes"):
        assert load_model(checkpoint, device="cpu", backend="auto").backend == "torch"
    assert "pip install onnx" in caplog.text
    with pytest.raises(ModelError, match="missing onnx"):
        load_model(checkpoint, device="cpu", backend="onnx")


def test_predict_cli_backend_option(checkpoint, bccd, tmp_path):
    image = bccd / "JPEGImages" / f"{IDS[0]}.jpg"
    cells = {}
    for backend in ("torch", *INSTALLED):
        out = tmp_path / backend
        args = [
            "predict",
            str(image),
            "--model",
            str(checkpoint),
            "--out",
            str(out),
            "--outputs",
            "csv",
            "--score-threshold",
            "0",
            "--backend",
            backend,
            "--json",
        ]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        cells[backend] = (out / "cells.csv").read_text().splitlines()
    assert all(len(found) == len(cells["torch"]) > 1 for found in cells.values())
