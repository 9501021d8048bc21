"""``cytolens predict --workers 2`` writes what ``--workers 1`` writes; ``--scheduler`` at no scheduler is one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cytolens.cli.main import app
from cytolens.examples import path as examples_path

EXAMPLES = examples_path() / "JPEGImages"


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """The three bundled examples and, between them, an image file that cannot be read."""
    folder = tmp_path / "images"
    shutil.copytree(EXAMPLES, folder)
    (folder / "BloodImage_00002_broken.jpg").write_bytes(b"not a JPEG")
    return folder


def predict(*args: object) -> object:
    return CliRunner().invoke(app, ["predict", *map(str, args)])


@pytest.mark.timeout(600)
def test_two_workers_write_the_same_tables_in_the_same_order(images: Path, tmp_path: Path) -> None:
    one = predict(images, "--out", tmp_path / "one")
    two = predict(images, "--out", tmp_path / "two", "--workers", "2")
    for run in (one, two):
        assert run.exit_code == 1, run.output
        assert "BloodImage_00002_broken.jpg" in run.stderr and "Traceback" not in run.output
    for table in ("cells.csv", "counts.csv", "napari/BloodImage_00007.csv"):
        assert (tmp_path / "two" / table).read_bytes() == (tmp_path / "one" / table).read_bytes(), table
    assert sorted(path.name for path in (tmp_path / "two" / "overlays").iterdir()) == sorted(
        path.name for path in (tmp_path / "one" / "overlays").iterdir()
    )


@pytest.mark.timeout(120)
def test_unreachable_scheduler_is_one_line(tmp_path: Path) -> None:
    run = predict(EXAMPLES, "--out", tmp_path / "out", "--scheduler", "tcp://127.0.0.1:9")
    assert run.exit_code == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: tcp://127.0.0.1:9: no Dask scheduler answers at this address (Timed out trying to "
                      "connect to tcp://127.0.0.1:9 after 5 s)"], run.stderr
    assert "Traceback" not in run.output
