"""ONNX Runtime and OpenVINO for point FCNs (and the bundled box model): the cells of torch, a cached export that is
rebuilt when damaged, one line for a missing package; Monte-Carlo passes still run the torch network."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cytolens
from cytolens.cli.main import app
from cytolens.inference import runtimes
from cytolens.inference.onnx_points import OnnxFCN
from cytolens.io.images import read_image
from cytolens.models.point_fcn import PointFCN
from cytolens.models.registry import bundled_models

pytest.importorskip("onnx")
EXAMPLE = Path(cytolens.__file__).parent / "examples" / "bccd" / "JPEGImages" / "BloodImage_00015.jpg"
POINTS = "rbc-morphology-points"
INSTALLED = [runtime for runtime in runtimes.RUNTIMES if not runtimes.missing_packages(runtime)]
pytestmark = pytest.mark.skipif(
    not {POINTS, "blood-cells"} <= set(bundled_models()), reason="bundled models not built yet"
)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CYTOLENS_CACHE_DIR", str(tmp_path / "cache"))  # each test starts with an empty cache


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return read_image(EXAMPLE)[:288, :352]  # a corner keeps the test quick; tiles of any size are exported


def _same_points(expected: cytolens.Result, found: cytolens.Result) -> None:
    assert 0 < len(found.cells) == len(expected.cells)
    np.testing.assert_array_equal(found.cells.centres, expected.cells.centres)
    np.testing.assert_allclose(found.cells.scores, expected.cells.scores, atol=1e-4)
    np.testing.assert_allclose(found.cells.probabilities, expected.cells.probabilities, atol=1e-3)


@pytest.mark.parametrize("runtime", INSTALLED)
def test_point_cells_equal_torch(runtime, pixels, tmp_path):
    expected = cytolens.load_model(POINTS, device="cpu", backend="torch").predict([pixels])[0]
    model = cytolens.load_model(POINTS, device="cpu", backend=runtime)
    assert model.backend == runtime and isinstance(model.predictor.network, OnnxFCN)
    assert isinstance(model.network, PointFCN)  # the torch network, for Monte-Carlo passes
    _same_points(expected, model.predict([pixels])[0])
    assert len(list((tmp_path / "cache").glob("*.onnx"))) == 1
    with_thresholds = model.with_thresholds(min_distance=5)  # shares the runtime
    assert with_thresholds.backend == runtime and with_thresholds.predictor.network is model.predictor.network


@pytest.mark.parametrize("runtime", INSTALLED)
def test_bundled_box_model_cells_equal_torch(runtime):
    expected = cytolens.load_model("blood-cells", device="cpu", backend="torch").predict(EXAMPLE)[0].cells
    found = cytolens.load_model("blood-cells", device="cpu", backend=runtime).predict(EXAMPLE)[0].cells
    assert 0 < len(found) == len(expected)
    np.testing.assert_array_equal(found.labels, expected.labels)
    np.testing.assert_allclose(found.boxes, expected.boxes, atol=1e-2)
    np.testing.assert_allclose(found.scores, expected.scores, atol=1e-4)


def test_a_damaged_cached_file_is_rebuilt(pixels, tmp_path, caplog):
    runtime = INSTALLED[0]
    expected = cytolens.load_model(POINTS, device="cpu", backend=runtime).predict([pixels])[0]
    (cached,) = (tmp_path / "cache").glob("*.onnx")
    whole = cached.read_bytes()
    cached.write_bytes(whole[: len(whole) // 3])
    with caplog.at_level(logging.WARNING, logger="cytolens"):
        found = cytolens.load_model(POINTS, device="cpu", backend=runtime).predict([pixels])[0]
    assert "cached ONNX model does not load" in caplog.text
    assert cached.read_bytes() == whole  # rebuilt in place, whole
    _same_points(expected, found)


def test_monte_carlo_passes_run_the_torch_network(pixels):
    model = cytolens.load_model(POINTS, device="cpu", backend="onnx")
    reference = cytolens.load_model(POINTS, device="cpu", backend="torch")
    (plain, passes), = model.passes_iter([pixels], passes=2, dropout=0.1, seed=3)
    (expected, expected_passes), = reference.passes_iter([pixels], passes=2, dropout=0.1, seed=3)
    np.testing.assert_array_equal(plain.cells.centres, expected.cells.centres)
    np.testing.assert_array_equal(passes.cells[1].centres, expected_passes.cells[1].centres)


@pytest.mark.parametrize("runtime", runtimes.RUNTIMES)
def test_a_missing_package_is_one_line(runtime, tmp_path, monkeypatch):
    monkeypatch.setattr(runtimes, "missing_packages", lambda name: [name] if name == runtime else [])
    args = ["predict", str(EXAMPLE), "--model", POINTS, "--out", str(tmp_path / "out"), "--backend", runtime]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    name = {"onnx": "ONNX Runtime", "openvino": "OpenVINO"}[runtime]
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ") and line.endswith(
        f"{POINTS}.pt: the {name} backend cannot run this model: missing {runtime} (pip install {runtime})"
    )
