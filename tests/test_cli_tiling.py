"""``cytolens predict --tile-size N --overlap M``: the model's tiling overridden from the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cytolens.cli.main import app
from cytolens.examples import path as examples_path
from cytolens.inference.model import load_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1280x960 mosaic of four 640x480 example fields (the first one twice)."""
    images = sorted((examples_path() / "JPEGImages").glob("*.jpg"))
    fields = [np.asarray(Image.open(path).convert("RGB")) for path in images]
    fields.append(fields[0])
    path = tmp_path_factory.mktemp("mosaic") / "mosaic.png"
    Image.fromarray(np.vstack([np.hstack(fields[:2]), np.hstack(fields[2:])])).save(path)
    return path


def test_tile_size_and_overlap_reach_the_model(mosaic: Path, tmp_path: Path) -> None:
    args = ["predict", str(mosaic), "-o", str(tmp_path / "out"), "--outputs", "counts", "--tile-size", "400",
            "--overlap", "150"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    counts = pd.read_csv(tmp_path / "out" / "counts.csv").iloc[0]
    (expected,) = load_model("blood-cells").predict(mosaic, tile_size=400, overlap=150)
    assert {name: int(counts[name]) for name in expected.classes} == expected.counts()


def test_a_tile_too_small_is_a_usage_error(mosaic: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["predict", str(mosaic), "-o", str(tmp_path / "out"), "--tile-size", "16"],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "--tile-size" in result.output and not (tmp_path / "out").exists()
