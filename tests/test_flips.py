"""Test-time flips of point models: a card setting, `with_flips`, `predict --flips` and `slide --flips`."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import cytolens
from cytolens.cli.main import app
from cytolens.errors import CytolensError
from cytolens.examples import path as examples_path
from cytolens.inference.parallel import ModelSpec
from cytolens.io.images import read_image
from cytolens.models.card import ModelCard
from cytolens.models.registry import bundled_models

pytestmark = pytest.mark.skipif(
    not {"blood-cells", "rbc-morphology-points"} <= set(bundled_models()), reason="bundled models not built yet"
)


def test_with_flips_sets_the_card_and_leaves_the_model_it_came_from_alone():
    model = cytolens.load_model("rbc-morphology-points", device="cpu", backend="torch")
    flipped = model.with_flips()
    assert flipped.card.input.flips and flipped.predictor.flips
    assert not model.card.input.flips and not model.predictor.flips
    assert flipped.network is model.network  # shared, nothing reloaded
    assert not flipped.with_flips(False).predictor.flips


def test_the_flips_setting_round_trips_through_a_card_and_old_cards_read_without_it():
    card = cytolens.load_model("rbc-morphology-points", device="cpu").with_flips().card
    again = ModelCard.from_dict(card.to_dict(), "flipped.pt")
    assert again.input.flips
    meta = card.to_dict()
    meta["input"].pop("flips")
    assert not ModelCard.from_dict(meta, "old.pt").input.flips


def test_flipped_predictions_find_about_the_same_cells_on_a_mirrored_image():
    model = cytolens.load_model("rbc-morphology-points", device="cpu", backend="torch").with_flips()
    pixels = read_image(sorted((examples_path() / "JPEGImages").iterdir())[0])
    (result,) = model.predict([pixels])
    (mirrored,) = model.predict([pixels[:, ::-1].copy()])
    assert len(result.cells) > 0
    assert abs(len(mirrored.cells) - len(result.cells)) <= max(2, len(result.cells) // 20)


def test_box_models_refuse_flips_in_one_line(tmp_path):
    with pytest.raises(CytolensError, match="flips are for point models"):
        cytolens.load_model("blood-cells", device="cpu").with_flips()
    images = str(examples_path() / "JPEGImages")
    result = CliRunner().invoke(app, ["predict", images, "--flips", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "flips" in result.output


def test_a_pipeline_flips_its_point_detector():
    pipeline = cytolens.load_model("rbc-morphology", device="cpu", backend="torch").with_flips()
    assert pipeline.finder.predictor.flips


def test_a_model_spec_carries_flips_to_the_workers():
    model = ModelSpec("rbc-morphology-points", backend="torch", settings={"flips": True}).load()
    assert model.predictor.flips
