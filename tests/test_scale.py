"""Physical scale: images at another µm/px are resized to the model's, and the cells mapped back."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tifffile
from PIL import Image

import cytolens
from cytolens.examples import path as examples_path
from cytolens.io.images import image_mpp, read_image
from cytolens.models.registry import bundled_models

IMAGE = examples_path() / "JPEGImages" / "BloodImage_00007.jpg"


def test_image_mpp_from_tiff_resolution_tags_and_ome(tmp_path):
    pixels = np.zeros((8, 8, 3), np.uint8)
    tifffile.imwrite(tmp_path / "cm.tif", pixels, resolution=(1e4 / 0.25, 1e4 / 0.25), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "dpi.tif", pixels, resolution=(72, 72), resolutionunit="INCH")
    tifffile.imwrite(tmp_path / "ome.ome.tif", pixels, ome=True, metadata={"PhysicalSizeX": 0.5, "axes": "YXS"})
    Image.fromarray(pixels).save(tmp_path / "plain.png")
    assert image_mpp(tmp_path / "cm.tif") == pytest.approx(0.25)
    assert image_mpp(tmp_path / "dpi.tif") is None  # 352.8 µm/px: an editor's 72 dpi, not a microscope's scale
    assert image_mpp(tmp_path / "ome.ome.tif") == pytest.approx(0.5)
    assert image_mpp(tmp_path / "plain.png") is None


@pytest.mark.skipif("blood-cells" not in bundled_models(), reason="bundled model not built yet")
def test_an_image_at_half_the_magnification_is_resized_and_its_cells_mapped_back(tmp_path, caplog):
    model = cytolens.load_model("blood-cells", device="cpu")
    full = read_image(IMAGE)
    half = np.asarray(Image.fromarray(full).resize((320, 240), Image.Resampling.LANCZOS))  # 0.15 µm/px
    tifffile.imwrite(tmp_path / "half.tif", half, resolution=(1e4 / 0.15, 1e4 / 0.15), resolutionunit="CENTIMETER")
    (reference,) = model.predict([full])
    with caplog.at_level(logging.INFO):
        (given,) = model.predict([half], mpp=0.15)
        (from_file,) = model.predict(tmp_path / "half.tif")
        (unscaled,) = model.predict([half])
    assert (given.width, given.height) == (320, 240) and given.mpp == 0.15
    assert given.counts()["WBC"] == reference.counts()["WBC"] == 1
    assert abs(given.counts()["RBC"] - reference.counts()["RBC"]) <= 2
    assert given.counts() == from_file.counts() and from_file.mpp == pytest.approx(0.15)
    assert given.cells.boxes[:, 2].max() <= 320.5  # in the small image's pixels
    # a box model's own transform enlarges a small image to its input size anyway: here the scale changes little
    assert abs(unscaled.counts()["RBC"] - reference.counts()["RBC"]) <= 2
    messages = [record.getMessage() for record in caplog.records]
    assert sum("resized by 2 to the model's 0.075 µm/px" in message for message in messages) == 2
    assert sum("images state no µm/px: taken at the model's 0.075 µm/px" in message for message in messages) == 1


@pytest.mark.skipif("blood-cells" not in bundled_models(), reason="bundled model not built yet")
def test_an_image_at_twice_the_magnification_is_shrunk_instead_of_tiled_at_the_wrong_scale():
    model = cytolens.load_model("blood-cells", device="cpu")
    full = read_image(IMAGE)
    double = np.asarray(Image.fromarray(full).resize((1280, 960), Image.Resampling.BICUBIC))  # 0.0375 µm/px
    (reference,) = model.predict([full])
    (given,) = model.predict([double], mpp=0.0375)
    (unscaled,) = model.predict([double])
    assert (given.width, given.height) == (1280, 960)
    assert given.counts()["WBC"] == reference.counts()["WBC"]
    assert abs(given.counts()["RBC"] - reference.counts()["RBC"]) <= 2
    assert unscaled.counts()["WBC"] > 1  # measured 4 white and 37 red cells: pieces of cells twice their size


@pytest.mark.skipif("blood-cells" not in bundled_models(), reason="bundled model not built yet")
def test_an_image_of_another_stain_is_warned_about(crchisto, caplog):
    model = cytolens.load_model("blood-cells", device="cpu")
    he = crchisto / "validation" / "img16" / "img16.png"
    with caplog.at_level(logging.WARNING):
        model.predict([IMAGE])
        assert not [r for r in caplog.records if "another stain" in r.getMessage()]
        model.predict([he])
    (line,) = [r.getMessage() for r in caplog.records if "another stain" in r.getMessage()]
    assert line.startswith(str(he)) and "blood-cells's training images" in line
