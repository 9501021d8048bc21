"""Bad input to int8 FCOS box models: a hand-edited ``int8`` section of the bundled blood-cells card is refused in one
line naming the file and the entry (at reading, or by the runtime that quantises the export, ``auto`` included: no
silent float fallback), huge ranges, a missing input range, ranges of one value and float nodes the export lacks
included; ``cytolens quantise`` refuses a pipeline, a non-positive ``--images`` and an ``--out`` in the bundled models
folder in one line, and names a small calibration image.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cytolens import examples
from cytolens.cli.main import app
from cytolens.errors import ModelError
from cytolens.models.card import ModelCard
from cytolens.models.checkpoint import read_card
from cytolens.models.registry import resolve_model
from test_cli import assert_one_line_error

pytestmark = pytest.mark.usefixtures("one_thread")

NAME = "/backbone/body/conv_stem/Pad_output_0"
"""An activation of the blood-cells export."""
HUGE = 1e30
"""A range end no activation of a normalised network reaches: uint8 steps of about 1e28 zero every activation."""


@pytest.fixture(scope="module")
def card() -> dict:
    """The bundled blood-cells card, as plain data."""
    return read_card(resolve_model("blood-cells")).card.to_dict()


def invoke(*args: object) -> object:
    return CliRunner().invoke(app, [str(arg) for arg in args], env={"COLUMNS": "300"})


def with_int8(path: Path, int8: object) -> Path:
    """The blood-cells checkpoint written to ``path`` with ``int8`` as its card's int8 section, unchecked (as a hand
    edit of the JSON would leave it).
    """
    payload = torch.load(resolve_model("blood-cells"), map_location="cpu", weights_only=True)
    meta = {**json.loads(payload["card"]), "int8": int8}
    torch.save({**payload, "card": json.dumps(meta)}, path)
    return path


@pytest.mark.parametrize(
    ("int8", "where"),
    [({"ranges": {NAME: [float("-inf"), 1.0]}}, f"int8.ranges.{NAME}"),
     ({"ranges": {NAME: [False, True]}}, f"int8.ranges.{NAME}"),
     ({"ranges": {NAME: ["0", "1"]}}, f"int8.ranges.{NAME}"),
     ({"ranges": {NAME: [0, 1, 2]}}, f"int8.ranges.{NAME}"),
     ({"ranges": {NAME: "0,1"}}, f"int8.ranges.{NAME}"),
     ({"ranges": None}, "int8 lacks ranges"),
     ({"ranges": {NAME: [0, 1]}, "keep_float": "abc"}, "int8.keep_float"),
     ({"ranges": {NAME: [0, 1]}, "about": [1, 2]}, "int8.about"),
     ({"ranges": {NAME: [0, 1]}, "scale": 2}, "int8 holds unknown entries 'scale'"),
     ([1, 2], "int8 must be a mapping"),
     ("yes", "int8 must be a mapping")],
)  # fmt: skip
def test_a_malformed_int8_section_of_a_box_card_is_refused_naming_it(card, int8, where):
    with pytest.raises(ModelError) as error:
        ModelCard.from_dict({**card, "int8": int8}, "boxes.pt")
    assert str(error.value).startswith(f"boxes.pt: metadata {where}") and "\n" not in str(error.value)


@pytest.mark.parametrize("pair", [[-HUGE, HUGE], [-1e300, 1e300]])
def test_ranges_beyond_any_activation_are_refused_naming_them(card, pair):
    with pytest.raises(ModelError, match=f"int8.ranges.{NAME}"):
        ModelCard.from_dict({**card, "int8": {"ranges": {NAME: pair}}}, "boxes.pt")


def test_predict_names_the_checkpoint_of_a_malformed_int8_section(tmp_path):
    model = with_int8(tmp_path / "edited.pt", {"ranges": {NAME: [float("nan"), 1.0]}})
    field = next((examples.path() / "JPEGImages").glob("*.jpg"))
    result = invoke("predict", field, "--model", model, "--backend", "onnx", "--out", tmp_path / "out")
    assert_one_line_error(result, str(model), f"int8.ranges.{NAME}")
    assert not (tmp_path / "out").exists()


def test_auto_refuses_ranges_that_miss_the_export_instead_of_running_float(tmp_path):
    model = with_int8(tmp_path / "partial.pt", {"ranges": {NAME: [0.0, 1.0]}})
    field = next((examples.path() / "JPEGImages").glob("*.jpg"))
    result = invoke("predict", field, "--model", model, "--backend", "auto", "--out", tmp_path / "out")
    assert_one_line_error(result, str(model), "no range for", "cytolens quantise")


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> dict:
    """The int8 section of blood-cells calibrated on one example field."""
    out = tmp_path_factory.mktemp("calibrated") / "int8.pt"
    result = invoke("quantise", "blood-cells", "--data", examples.path(), "--format", "voc", "--images", 1,
                    "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    return read_card(out).card.to_dict()["int8"]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [(lambda ranges: ranges.pop("images"), "no range for 1 activation(s) of this export (e.g. images)"),
     (lambda ranges: ranges.update(images=[0.0, 0.0]), "a range of one value (e.g. images: 0.0)")],
)  # fmt: skip
def test_ranges_missing_the_input_or_of_one_value_are_refused_in_one_line(tmp_path, calibrated, edit, problem):
    ranges = dict(calibrated["ranges"])
    edit(ranges)
    model = with_int8(tmp_path / "edited.pt", {**calibrated, "ranges": ranges})
    field = next((examples.path() / "JPEGImages").glob("*.jpg"))
    result = invoke("predict", field, "--model", model, "--backend", "onnx", "--out", tmp_path / "out")
    assert_one_line_error(result, str(model), problem)


def test_a_float_node_the_export_lacks_is_refused_in_one_line(tmp_path, calibrated):
    kept = [*calibrated["keep_float"], "/head/no_such/Conv"]
    model = with_int8(tmp_path / "edited.pt", {**calibrated, "keep_float": kept})
    field = next((examples.path() / "JPEGImages").glob("*.jpg"))
    result = invoke("predict", field, "--model", model, "--backend", "auto", "--out", tmp_path / "out")
    assert_one_line_error(result, str(model), "keeps 1 node(s) in float that this export does not have",
                          "/head/no_such/Conv", "cytolens quantise")  # fmt: skip


def test_quantise_writes_nothing_into_the_bundled_models_folder(tmp_path):
    bundled = resolve_model("blood-cells")
    before = bundled.read_bytes()
    result = invoke("quantise", "blood-cells", "--data", examples.path(), "--format", "voc", "--out", bundled,
                    "--exist-ok")  # fmt: skip
    assert_one_line_error(result, str(bundled), "bundled models folder")
    assert bundled.read_bytes() == before


def test_quantise_names_a_small_calibration_image(tmp_path):
    from PIL import Image

    folder = tmp_path / "images" / "cells"  # the folders format: one folder per class
    folder.mkdir(parents=True)
    field = Image.open(next((examples.path() / "JPEGImages").glob("*.jpg")))
    field.save(folder / "field.png")
    field.resize((40, 30)).save(folder / "tiny.png")
    data = ["--data", folder.parent, "--format", "folders"]
    result = invoke("quantise", "blood-cells", *data, "--out", tmp_path / "q.pt")
    assert result.exit_code == 0, result.output
    assert "tiny.png: 40x30 pixels at the model's scale: a small image to calibrate on" in result.output


def test_quantise_refuses_a_pipeline_and_no_images_in_one_line(tmp_path):
    data = ["--data", examples.path(), "--format", "voc", "--out", tmp_path / "int8.pt"]
    result = invoke("quantise", "rbc-morphology", *data)
    assert_one_line_error(result, "rbc-morphology", "FCOS box detectors only", "pipeline")
    result = invoke("quantise", "blood-cells", *data, "--images", 0)
    assert result.exit_code == 2 and "Traceback" not in result.output and "--images" in result.output
    assert not (tmp_path / "int8.pt").exists()
