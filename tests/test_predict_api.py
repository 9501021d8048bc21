"""The Python API: ``cytolens.load_model(...).predict(...)`` and the result objects' conversions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cytolens
from cytolens.examples import path as examples_path
from cytolens.io.images import read_image
from cytolens.results.result import Result
from tiny_detector import CLASSES, tiny_detector

EXAMPLES = examples_path() / "JPEGImages"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> object:
    return cytolens.load_model(tiny_detector(tmp_path_factory.mktemp("model") / "tiny.pt"), device="cpu")


def test_predict_returns_results_that_convert_to_every_output(model: object) -> None:
    results = model.predict(EXAMPLES, score_threshold=0.0)
    assert [result.path.name for result in results] == sorted(path.name for path in EXAMPLES.glob("*.jpg"))
    for result in results:
        assert isinstance(result, Result) and len(result.cells) > 0
        assert (result.width, result.height) == (640, 480)

        table = result.to_dataframe()
        assert len(table) == len(result.cells)
        assert {"image", "x", "y", "class", "score", "x1", "y1", "x2", "y2"} <= set(table.columns)
        assert set(table["class"]) <= {*CLASSES, ""}  # "" for a box without a class

        coco = result.to_coco(image_id=7)
        assert len(coco) == len(result.cells)
        assert all(entry["image_id"] == 7 and len(entry["bbox"]) == 4 and "score" in entry for entry in coco)
        labels = result.cells.labels
        classified = [entry["category_id"] for entry, label in zip(coco, labels, strict=True) if label >= 0]
        assert set(classified) <= {1, 2, 3}

        collection = result.to_geojson()
        assert collection["type"] == "FeatureCollection" and len(collection["features"]) == len(result.cells)

        picture = result.plot()
        original = read_image(result.path)
        assert picture.shape == original.shape and picture.dtype == np.uint8
        assert not np.array_equal(picture, original)


def test_predict_takes_arrays_and_applies_the_score_threshold(model: object) -> None:
    pixels = read_image(next(EXAMPLES.glob("*.jpg")))
    (everything,) = model.predict([pixels], score_threshold=0.0)
    (some,) = model.predict([pixels], score_threshold=0.2)
    assert 0 < len(some.cells) < len(everything.cells) and (some.cells.scores >= 0.2).all()
    assert len(model.predict([pixels])[0].cells) == 0  # the stored threshold 0.3 is above every score


def test_a_box_detector_gives_every_cell_a_class(model: object) -> None:
    (result,) = model.predict([read_image(next(EXAMPLES.glob("*.jpg")))], score_threshold=0.0)
    assert (result.cells.labels >= 0).all()


def test_a_pixel_size_other_than_the_models_is_resized_and_said_once(tmp_path: Path, caplog) -> None:
    model = cytolens.load_model(tiny_detector(tmp_path / "tiny.pt", mpp=0.1), device="cpu", backend="torch")
    images = sorted((examples_path() / "JPEGImages").glob("*.jpg"))
    with caplog.at_level("INFO", logger="cytolens"):
        model.predict(images, mpp=0.1)
    assert not [r for r in caplog.records if "resized" in r.getMessage()]
    with caplog.at_level("INFO", logger="cytolens"):
        results = model.predict(images, mpp=0.05)
    assert len([r for r in caplog.records if "resized by 0.5 to the model's 0.1 µm/px" in r.getMessage()]) == 1
    assert [(r.width, r.height, r.mpp) for r in results] == [(640, 480, 0.05)] * len(images)  # the images' own pixels


def test_mixed_inputs_keep_their_order(model: object) -> None:
    path = sorted((examples_path() / "JPEGImages").glob("*.jpg"))[0]
    results = model.predict([read_image(path), path, read_image(path)])
    assert [r.path.name for r in results] == ["array0", path.name, "array2"]


def test_an_array_input_plots_without_a_file_and_a_file_input_lets_its_pixels_go(model: object) -> None:
    file = sorted((examples_path() / "JPEGImages").glob("*.jpg"))[0]
    image = read_image(file)
    from_array, from_file = model.predict([image[:100, :120], file])
    assert from_array.plot().shape == (100, 120, 3)
    assert from_file.pixels is None and from_file.plot().shape == image.shape
