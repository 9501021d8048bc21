"""Stain normalisation at inference: `with_stain` and `predict --stain METHOD --stain-reference IMAGE`."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import cytolens
from cytolens.cli.main import app
from cytolens.errors import CytolensError
from cytolens.examples import path as examples_path
from cytolens.io.images import read_image
from cytolens.models.registry import bundled_models

pytestmark = pytest.mark.skipif("rbc-morphology-points" not in bundled_models(), reason="bundled model not built yet")
IMAGES = examples_path() / "JPEGImages"


def first_image() -> np.ndarray:
    return read_image(sorted(IMAGES.iterdir())[0])


def test_normalising_keeps_the_image_pixels_in_the_results_and_reinhard_towards_the_image_itself_changes_nothing():
    model = cytolens.load_model("rbc-morphology-points", device="cpu", backend="torch")
    pixels = first_image()
    (plain,) = model.predict([pixels])
    (same,) = model.with_stain("reinhard", pixels).predict([pixels])
    assert np.array_equal(same.cells.centres, plain.cells.centres)
    other = sorted(IMAGES.iterdir())[1]
    for method in ("reinhard", "macenko"):
        normalising = model.with_stain(method, read_image(other))
        assert model.stain is None and normalising.stain[0] == method
        (result,) = normalising.predict([pixels])
        assert np.array_equal(result.pixels, pixels)  # the overlay shows the image as it is
        assert len(result.cells) > 0
    assert model.with_stain("reinhard", pixels).with_stain(None).stain is None


def test_unknown_methods_and_a_missing_reference_are_refused():
    model = cytolens.load_model("rbc-morphology-points", device="cpu")
    with pytest.raises(CytolensError, match="unknown stain normalisation"):
        model.with_stain("vahadane", first_image())
    with pytest.raises(CytolensError, match="needs a reference"):
        model.with_stain("macenko")


def test_predict_stain_writes_the_run_and_needs_its_reference(tmp_path):
    reference = sorted(IMAGES.iterdir())[1]
    runner = CliRunner()
    done = runner.invoke(app, ["predict", str(IMAGES), "-m", "rbc-morphology-points", "--stain", "reinhard",
                               "--stain-reference", str(reference), "--out", str(tmp_path / "out"), "--json"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "out" / "cells.csv").is_file()
    alone = runner.invoke(app, ["predict", str(IMAGES), "--stain", "reinhard", "--out", str(tmp_path / "other")])
    assert alone.exit_code == 2 and "--stain-reference" in alone.output
    assert not (tmp_path / "other").exists()
