"""Numbers that are out of range or not finite, refused where they enter: recipes, dataset specs, evaluate's
--radius, the pixel limit of images, and images a box model would shrink beyond its scale.

Every fixture is generated in ``tmp_path``; each refusal is one line naming the file (or the option).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

import cytolens
from cytolens.cli.main import app
from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import CytolensError, DataError
from cytolens.inference.boxes import MAX_SHRINK
from cytolens.io.images import DEFAULT_MAX_PIXELS, max_pixels, read_image, set_max_pixels
from cytolens.io.spec import load_spec
from cytolens.metrics import evaluate_datasets
from cytolens.training.recipe import Recipe
from tiny_detector import tiny_detector


def _recipe_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(f"data: {tmp_path}\nformat: voc\n{text}")
    return path


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("lr: -1\n", "lr must lie in (0, inf], not -1"),
        ("lr: .nan\n", "lr must be a finite number, not nan"),
        ("lr: 'fast'\n", "lr must be a number, not 'fast'"),
        ("batch_size: 0\n", "batch_size must lie in [1, inf], not 0"),
        ("batch_size: 2.5\n", "batch_size must be a whole number, not 2.5"),
        ("val_every: 0\n", "val_every must lie in [1, inf], not 0"),
        ("ema_decay: 1\n", "ema_decay must lie in [0, 1), not 1"),
        ("score_threshold: 2\n", "score_threshold must lie in [0, 1], not 2"),
        ("seed: -1\n", "seed must lie in [0, 4294967295], not -1"),
        ("patience: 0\n", "patience must lie in [1, inf], not 0"),
        ("crop_size: 8\n", "crop_size must lie in [32, inf], not 8"),
        ("proximity_a: 0\n", "proximity_a must lie in (0, inf], not 0"),
        ("stages: [{freeze_blocks: 0, epochs: 0}]\n", "stage 1 epochs must lie in [1, inf], not 0"),
        ("stages: [{freeze_blocks: -2, epochs: 1}]\n", "stage 1 freeze_blocks must lie in [0, inf], not -2"),
        ("kwargs: {fpn_channels: -3}\n", "kwargs fpn_channels must lie in [0, inf], not -3"),
        ("kwargs: {fpn_channels: .inf}\n", "kwargs fpn_channels must be a finite number, not inf"),
    ],
)
def test_recipe_numbers_out_of_range_name_the_recipe(tmp_path: Path, text: str, problem: str) -> None:
    path = _recipe_file(tmp_path, text)
    with pytest.raises(DataError) as error:
        Recipe.from_yaml(path)
    assert error.value.path == path and error.value.problem == problem


def test_recipe_flags_are_real_booleans_and_yaml_floats_in_text_are_numbers(tmp_path: Path) -> None:
    for value in ("'no'", "0", "'false'"):
        path = _recipe_file(tmp_path, f"ignore_unlabelled_cells: {value}\n")
        with pytest.raises(DataError, match="ignore_unlabelled_cells must be true or false"):
            Recipe.from_yaml(path)
    text = "task: points\narchitecture: fcn-small\nignore_unlabelled_cells: no\nlr: 1e-3\nbatch_size: 2.0\n"
    recipe = Recipe.from_yaml(_recipe_file(tmp_path, text))
    assert recipe.points.ignore_unlabelled_cells is False and recipe.lr == 0.001 and recipe.batch_size == 2
    assert type(recipe.batch_size) is int


def test_recipe_values_from_options_are_checked_without_a_file() -> None:
    with pytest.raises(CytolensError, match=r"^lr must lie in \(0, inf\], not -1") as error:
        Recipe.from_dict({"lr": -1})
    assert not isinstance(error.value, DataError)
    assert Recipe.from_dict(Recipe().to_dict()) == Recipe()


def _spec_file(tmp_path: Path, splits: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(f"format: voc\nroot: .\nsplits: {splits}\n")
    return path


@pytest.mark.parametrize(
    ("splits", "problem"),
    [
        ("{ratio: {train: .inf}}", "ratio of split train must be a finite number, not inf"),
        ("{ratio: {train: .nan, val: 1}}", "ratio of split train must be a finite number, not nan"),
        ("{ratio: {train: 0, val: 1}}", "ratio of split train must lie in (0, inf], not 0"),
        ("{ratio: {train: -1, val: 2}}", "ratio of split train must lie in (0, inf], not -1"),
        ("{ratio: {train: '0.5'}}", "ratio of split train must be a number, not '0.5'"),
        ("{folds: 2.5}", "splits folds must be a whole number, not 2.5"),
        ("{folds: true}", "splits folds must be a number, not True"),
        ("{folds: 1}", "splits folds must lie in [2, inf], not 1"),
        ("{folds: 3, seed: -1}", "splits seed must lie in [0, 4294967295], not -1"),
        ("{folds: 3, seed: .inf}", "splits seed must be a finite number, not inf"),
    ],
)
def test_spec_split_numbers_out_of_range_name_the_spec(tmp_path: Path, splits: str, problem: str) -> None:
    path = _spec_file(tmp_path, splits)
    with pytest.raises(DataError) as error:
        load_spec(path)
    assert error.value.path == path and error.value.problem == problem


def test_evaluate_refuses_a_radius_not_above_zero(tmp_path: Path) -> None:
    truth = Dataset(["a"], [AnnotatedImage("1.png", 50, 50, cells=Cells(centres=[[5, 5]], labels=[0]))])
    pred = Dataset(["a"], [AnnotatedImage("1.png", 50, 50, cells=Cells(centres=[[5, 5]], labels=[0], scores=[1.0]))])
    for radius in (0.0, -1.0, float("nan")):
        with pytest.raises(CytolensError, match="radius must"):
            evaluate_datasets(pred, truth, radius=radius)
    (tmp_path / "truth.csv").write_text("image,x,y,class\n1.png,5,5,a\n")
    for radius in ("0", "-1", "nan"):
        args = ["evaluate", "--data", str(tmp_path / "truth.csv"), "--format", "points", "--predictions",
                str(tmp_path / "truth.csv"), "--pred-format", "points", "--radius", radius]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "--radius" in result.output, result.output


@pytest.fixture
def pixel_limit():
    """Restore the pixel limit after a test that changes it."""
    yield
    set_max_pixels(DEFAULT_MAX_PIXELS)


def test_the_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path: Path, pixel_limit: None) -> None:
    Image.new("RGB", (200, 100)).save(tmp_path / "big.png")
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((100, 200), np.uint8))
    assert max_pixels() == DEFAULT_MAX_PIXELS == 100_000_000
    set_max_pixels(19_999)
    for name in ("big.png", "big.tif"):
        with pytest.raises(DataError) as error:
            read_image(tmp_path / name)
        assert error.value.path == tmp_path / name
        assert error.value.problem.startswith("200x100 image (20,000 pixels) exceeds the pixel limit of 19,999;")
        assert "--max-pixels" in error.value.problem
    set_max_pixels(20_000)
    assert read_image(tmp_path / "big.png").shape == (100, 200, 3)
    set_max_pixels(0)  # no limit
    assert read_image(tmp_path / "big.tif").shape == (100, 200, 3)
    for bad in (-1, 1.5, float("inf")):
        with pytest.raises(CytolensError, match="pixel limit"):
            set_max_pixels(bad)


def _png_header(width: int, height: int) -> bytes:
    """A PNG holding only its header (IHDR) and end: it declares a size and has no pixels at all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_a_declared_huge_png_is_refused_without_decoding(tmp_path: Path) -> None:
    """A 45-byte PNG declaring 30,000 x 30,000 pixels (2.7 GB as RGB): refused from its header."""
    (tmp_path / "bomb.png").write_bytes(_png_header(30_000, 30_000))
    with pytest.raises(DataError) as error:
        read_image(tmp_path / "bomb.png")
    assert error.value.problem.startswith(
        "30000x30000 image (900,000,000 pixels) exceeds the pixel limit of 100,000,000;"
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_detector(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_the_pixel_limit_applies_to_mask_files(tmp_path: Path, pixel_limit: None, suffix: str) -> None:
    import tifffile
    from PIL import Image

    from cytolens.io.masks import _load_mask

    path = tmp_path / f"mask{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, np.zeros((60, 50), np.uint16))
    else:
        Image.fromarray(np.zeros((60, 50), np.uint8)).save(path)
    assert _load_mask(path).shape == (60, 50)
    set_max_pixels(2_999)
    with pytest.raises(DataError, match="50x60 image .* exceeds the pixel limit"):
        _load_mask(path)


def test_the_cli_option_sets_the_pixel_limit_for_one_command(tmp_path: Path, checkpoint: Path) -> None:
    Image.new("RGB", (60, 40), "white").save(tmp_path / "a.png")

    def predict(limit: str, out: str) -> object:
        args = ["predict", str(tmp_path / "a.png"), "--model", str(checkpoint), "--out", str(tmp_path / out)]
        return CliRunner().invoke(app, ["--max-pixels", limit, *args])

    result = predict("2000", "refused")
    assert result.exit_code == 1
    assert f"error: {tmp_path / 'a.png'}: 60x40 image (2,400 pixels) exceeds the pixel limit of 2,000;" in result.output
    assert max_pixels() == DEFAULT_MAX_PIXELS  # restored when the command ends
    assert predict("2400", "read").exit_code == 0
    assert predict("-1", "usage").exit_code == 2


def test_a_box_model_refuses_an_image_it_would_shrink_beyond_its_scale(tmp_path: Path, checkpoint: Path) -> None:
    """The tiny model's input is 256 x 192: a 1,100-pixel side is shrunk 4.3 times, beyond MAX_SHRINK."""
    assert MAX_SHRINK == 4.0
    Image.new("RGB", (1100, 800), "white").save(tmp_path / "mosaic.png")
    Image.new("RGB", (1000, 750), "white").save(tmp_path / "large.png")  # shrunk 3.9 times: still fits
    model = cytolens.load_model(checkpoint, device="cpu")
    mosaic, large = model.predict_iter([tmp_path / "mosaic.png", tmp_path / "large.png"])
    assert isinstance(mosaic, DataError) and mosaic.path == tmp_path / "mosaic.png"
    assert mosaic.problem == (
        "1100x800 image would be shrunk 4 times to the model's input; cells would be missed — crop or tile it"
    )
    assert not isinstance(large, DataError) and (large.width, large.height) == (1000, 750)
