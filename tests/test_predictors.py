"""One predictor per task: the registry CellModel dispatches through, raw outputs, batching, run-time tiling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cytolens
from conftest import dataset_path
from cytolens.errors import CytolensError, ModelError
from cytolens.examples import path as examples_path
from cytolens.inference import predictors
from cytolens.inference.peaks import find_peaks
from cytolens.inference.predictors import Batch, BoxPredictor, PointPredictor, predictor_type, register_predictor
from cytolens.io.images import read_image
from cytolens.models.registry import architectures, bundled_models
from tiny_detector import tiny_detector

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLE = sorted((examples_path() / "JPEGImages").glob("*.jpg"))[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> cytolens.inference.model.CellModel:
    return cytolens.load_model(tiny_detector(tmp_path_factory.mktemp("model") / "tiny.pt"), device="cpu")


@pytest.fixture(scope="module")
def rbc_morphology() -> cytolens.inference.model.CellModel:
    if "rbc-morphology-points" not in bundled_models():
        pytest.skip("bundled model not built yet")
    return cytolens.load_model("rbc-morphology-points", device="cpu")


@pytest.fixture(scope="module")
def chula_images() -> list[Path]:
    return [dataset_path("chula-rbc-12") / "Dataset" / f"{number}.jpg" for number in (2, 4, 5)]


def test_every_task_of_the_architecture_registry_has_a_predictor():
    assert predictor_type("boxes") is BoxPredictor and predictor_type("points") is PointPredictor
    for architecture in architectures().values():
        assert issubclass(predictor_type(architecture.task), predictors.Predictor)
    with pytest.raises(ModelError, match="no predictor is registered for task 'masks'"):
        predictor_type("masks")
    with pytest.raises(ValueError, match="registered twice"):
        register_predictor("boxes")(BoxPredictor)


def test_cell_model_predicts_through_the_registered_predictor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    seen = []

    class Recording(BoxPredictor):
        def predict(self, batch: Batch) -> list:
            seen.append([path.name for path in batch.paths])
            return super().predict(batch)

    monkeypatch.setitem(predictors._PREDICTORS.entries, "boxes", Recording)
    model = cytolens.load_model(tiny_detector(tmp_path / "tiny.pt"), device="cpu")
    assert type(model.predictor) is Recording and type(model.with_thresholds(score=0.1).predictor) is Recording
    results = model.predict([EXAMPLE, EXAMPLE, EXAMPLE], batch_size=2, score_threshold=0.0)
    assert seen == [[EXAMPLE.name] * 2, [EXAMPLE.name]] and len(results) == 3


def test_box_raw_outputs_are_the_detections_before_the_score_threshold(tiny):
    pixels = read_image(EXAMPLE)
    (raw,) = tiny.predictor.raw([pixels])
    assert set(raw) == {"boxes", "labels", "scores"} and raw["boxes"].shape == (len(raw["scores"]), 4)
    (everything,) = tiny.predict([pixels], score_threshold=0.0)
    np.testing.assert_array_equal(everything.cells.boxes, raw["boxes"])
    np.testing.assert_array_equal(everything.cells.scores, raw["scores"])
    (kept,) = tiny.predict([pixels], score_threshold=0.2)
    assert len(kept.cells) == (raw["scores"] >= 0.2).sum()


def test_point_raw_outputs_are_the_maps_the_cells_are_decoded_from(rbc_morphology, chula_images):
    pixels = read_image(chula_images[0])
    (raw,) = rbc_morphology.predictor.raw([pixels])
    assert raw["proximity"].shape == pixels.shape[:2]
    assert raw["logits"].shape == (len(rbc_morphology.classes), *pixels.shape[:2])
    (result,) = rbc_morphology.predict([pixels])
    thresholds = rbc_morphology.thresholds
    centres = find_peaks(raw["proximity"], thresholds.threshold_rel, thresholds.min_distance, thresholds.threshold_abs)
    np.testing.assert_array_equal(result.cells.centres, centres)
    rows, cols = np.floor(centres[:, 1]).astype(int), np.floor(centres[:, 0]).astype(int)
    np.testing.assert_array_equal(result.cells.labels, raw["logits"][:, rows, cols].argmax(axis=0))


def test_a_point_model_batches_images_and_finds_the_same_cells(rbc_morphology, chula_images):
    one = rbc_morphology.predict(chula_images, batch_size=1)
    three = rbc_morphology.predict(chula_images, batch_size=3)
    assert [len(result.cells) for result in one] == [len(result.cells) for result in three]
    for first, second in zip(one, three, strict=True):
        np.testing.assert_array_equal(first.cells.centres, second.cells.centres)
        np.testing.assert_array_equal(first.cells.labels, second.cells.labels)
        np.testing.assert_array_equal(first.cells.scores, second.cells.scores)
        np.testing.assert_array_equal(first.cells.probabilities, second.cells.probabilities)


def test_tiling_is_set_at_run_time_and_checked(tiny, rbc_morphology):
    changed = tiny.with_tiling(tile_size=400, overlap=50)
    assert changed.network is tiny.network and changed.card.input.tile_size == 400 and changed.card.input.overlap == 50
    assert tiny.card.input.tile_size is None and changed.predictor.tiling.long == 400
    with pytest.raises(CytolensError, match="tile_size must lie in \\[32, inf\\], not 8"):
        tiny.with_tiling(tile_size=8)
    with pytest.raises(CytolensError, match="overlap must be a whole number, not 2.5"):
        tiny.with_tiling(overlap=2.5)
    with pytest.raises(CytolensError, match="tile overlap 400 must be at least 0 and smaller than the tiles"):
        tiny.predict([read_image(EXAMPLE)], tile_size=400, overlap=400)
    with pytest.raises(CytolensError, match="2 \\* min_distance \\(20\\)"):  # the run stops: not one image's error
        rbc_morphology.predict([np.zeros((64, 64, 3), np.uint8)], overlap=4)


def test_a_point_model_takes_an_image_of_any_shape(rbc_morphology):
    rbc_morphology.check_fit("strip.png", np.zeros((3, 2000, 3), np.uint8))  # nothing to refuse
