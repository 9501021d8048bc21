"""Inputs that gave tracebacks, or one line without the file: recipes and specs of the wrong types or bytes,
an image the model cannot take among good ones, a failure while processing one image, and predictions that
cannot be scored against the truth. Each is now one line naming the file, and a bad image stops only itself.

Every fixture is generated in ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import cytolens
from cytolens.cli.main import app
from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import CytolensError, DataError
from cytolens.io.spec import load_data, load_spec
from cytolens.metrics import evaluate_datasets
from cytolens.results.result import Result
from cytolens.training.recipe import Recipe
from tiny_detector import tiny_detector

pytestmark = pytest.mark.usefixtures("one_thread")


def _one_line_naming(result: object, path: Path) -> str:
    """The CLI's error line, asserted to be a single ``error: <path>: ...`` line without a traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), result.output
    return lines[0]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("batch_size: four\n", "batch_size must be a number, not 'four'"),
        ("stages: [{freeze_blocks: 0, epochs: ten}]\n", "stage 1 epochs must be a number, not 'ten'"),
        ("stages: [{epochs: 2, blocks: 1}]\n", "stage 1 must be a mapping of freeze_blocks, epochs, max_size"),
        ("stages: 3\n", "stages must be a non-empty list of stages, not 3"),
        ("kwargs: [1, 2]\n", "kwargs must be a mapping of fcos builder arguments, not [1, 2]"),
        ("kwargs: {nonsense: 3}\n", "kwargs: fcos takes no argument 'nonsense' (it takes backbone, fpn_channels"),
        ("kwargs: {weights: none}\n", "kwargs: fcos takes no argument 'weights'"),
        ("kwargs: {backbone: 3}\n", "kwargs backbone must be text, not 3"),
        ("val_every: 0\n", "val_every must lie in [1, inf], not 0"),
        ("architecture: nope\n", "architecture 'nope' does not serve task 'boxes' (choose: fcos, faster-rcnn)"),
        ("task: nope\n", "unknown task 'nope'; choose one of: boxes, patches, points"),
        ("task: points\narchitecture: fcos\n", "architecture 'fcos' does not serve task 'points'"),
        ("keep: nope\n", "keep must be one of last, best, not 'nope'"),
        ("format: [voc]\n", "format must be text, not ['voc']"),
        ("format: pascal\n", "unknown format 'pascal'; choose one of: voc"),
        ("data: [a, b]\n", "data must be text, not ['a', 'b']"),
        ("aux_classes: RBC\n", "aux_classes must be a list of class names, not 'RBC'"),
        ("epochs: 3\n", "unknown recipe keys: epochs"),
    ],
)
def test_recipe_of_wrong_types_is_one_line_naming_the_recipe(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(DataError) as error:
        Recipe.from_yaml(path)
    assert error.value.path == path and error.value.problem.startswith(problem)


def test_train_reports_a_bad_recipe_in_one_line_naming_it(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"data: {tmp_path}\nformat: voc\nbatch_size: four\n")
    result = CliRunner().invoke(app, ["train", "--recipe", str(recipe), "--out", str(tmp_path / "run")])
    assert _one_line_naming(result, recipe) == f"error: {recipe}: batch_size must be a number, not 'four'"
    assert not (tmp_path / "run").exists()


def test_recipe_and_spec_bytes_that_are_not_text_name_the_file(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_bytes("data: x\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError) as error:
        Recipe.from_yaml(recipe)
    assert error.value.path == recipe and error.value.problem == "recipe is not UTF-8 text (byte 13, line 2)"
    recipe.write_text("data: [\n")
    with pytest.raises(DataError, match="recipe is not valid YAML at line 2"):
        Recipe.from_yaml(recipe)
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(b"format: voc\nroot: .\n\x00")
    with pytest.raises(DataError) as error:
        load_spec(spec)
    assert error.value.path == spec and error.value.problem == "dataset spec holds a NUL byte (line 3): not a text file"


def _voc_image(root: Path, name: str) -> None:
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "Annotations").mkdir(exist_ok=True)
    Image.new("RGB", (40, 30)).save(root / "JPEGImages" / f"{name}.jpg")
    (root / "Annotations" / f"{name}.xml").write_text(
        f"<annotation><filename>{name}.jpg</filename><size><width>40</width><height>30</height><depth>3</depth>"
        "</size><object><name>RBC</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax>"
        "</bndbox></object></annotation>"
    )


def test_a_split_list_that_is_not_utf8_names_the_list(tmp_path: Path) -> None:
    _voc_image(tmp_path / "voc", "a")
    (tmp_path / "train.txt").write_bytes(b"a\nb\xe9\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("format: voc\nroot: voc\nsplits: {lists: {train: train.txt}}\n")
    with pytest.raises(DataError) as error:
        load_data(spec)
    assert error.value.path == tmp_path / "train.txt"
    assert error.value.problem == "split list is not UTF-8 text (byte 3, line 2)"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("format: [voc]\nroot: .\n", "unknown format ['voc']; choose one of: voc"),
        ("format: voc\nroot: [a]\n", "root must be a folder or file name, not ['a']"),
        ("format: voc\nroot: .\nname: {a: 1}\n", "name must be text, not {'a': 1}"),
        ("format: voc\nroot: .\nclasses: [[a]]\n", "a class name must be text, not ['a']"),
        ("format: voc\nroot: .\nclasses: {RBC: [red]}\n", "a class name must be text, not ['red']"),
        ("format: voc\nroot: .\nsplits: {ratio: [1, 2]}\n", "splits ratio must map split names to fractions"),
        ("format: voc\nroot: .\nsplits: {lists: [a]}\n", "splits lists must map split names to ids or id files"),
        ("format: voc\nroot: .\nsplits: {lists: {train: 3}}\n", "split 'train' must be a list of ids or an id file"),
        ("format: voc\nroot: .\nsplits: {lists: {train: [[a]]}}\n", "an id of split 'train' must be text"),
    ],
)
def test_spec_of_wrong_types_is_one_line_naming_the_spec(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(DataError) as error:
        load_spec(path)
    assert error.value.path == path and error.value.problem.startswith(problem)


def test_stats_on_a_spec_with_a_list_format_is_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("format: [voc]\nroot: .\n")
    line = _one_line_naming(CliRunner().invoke(app, ["stats", "--data", str(spec)]), spec)
    assert "unknown format ['voc']" in line


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_detector(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Two ordinary images around one 3 x 2000 strip (which a box model would resize to 0 pixels wide)."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, size in (("a.png", (200, 150)), ("b.png", (3, 2000)), ("c.png", (200, 150))):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / name)
    return sorted(folder.iterdir())


@pytest.mark.parametrize("batch_size", [1, 3])
def test_an_image_too_thin_for_the_model_is_skipped_and_the_others_complete(
    checkpoint: Path, images: list[Path], batch_size: int
) -> None:
    model = cytolens.load_model(checkpoint, device="cpu")
    items = list(model.predict_iter(images, batch_size=batch_size, score_threshold=0.0))
    (strip,) = [item for item in items if isinstance(item, DataError)]  # yielded when met, before the batch
    assert strip.path == images[1]
    assert strip.problem == "3x2000 image is too thin for the model: it would be 0x256 pixels at its input"
    assert [item.path for item in items if isinstance(item, Result)] == [images[0], images[2]]


def test_predict_cli_reports_the_thin_image_in_one_line_and_writes_the_others(
    checkpoint: Path, images: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["predict", str(images[0].parent), "--model", str(checkpoint), "--out", str(out), "--outputs", "csv",
            "--score-threshold", "0"]
    result = CliRunner().invoke(app, args)
    line = _one_line_naming(result, images[1])
    assert line.endswith("is too thin for the model: it would be 0x256 pixels at its input")
    assert set(pd.read_csv(out / "cells.csv")["image"]) == {"a", "c"}  # rows name images by their ids


def test_a_failure_while_processing_one_image_is_that_image_s_error(
    checkpoint: Path, images: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever goes wrong inside the network for one image (here: a RuntimeError for the 3 x 2000 strip,
    with the size check switched off) is reported for that image; the batch is retried image by image."""
    model = cytolens.load_model(checkpoint, device="cpu")
    monkeypatch.setattr(type(model), "check_fit", lambda self, path, pixels: None)
    for batch_size in (1, 3):  # a batch is processed whole: its results keep the input order
        first, strip, last = model.predict_iter(images, batch_size=batch_size, score_threshold=0.0)
        assert isinstance(first, Result) and isinstance(last, Result)
        assert isinstance(strip, DataError) and strip.path == images[1]
        assert strip.problem.startswith("cannot process image (RuntimeError: ")
        assert "\n" not in strip.problem
    assert [result.path for result in model.predict(images)] == [images[0], images[2]]


def test_a_cytolens_error_while_processing_still_stops_the_run(
    checkpoint: Path, images: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A problem of the model itself (not of one image) is not turned into per-image errors."""
    model = cytolens.load_model(checkpoint, device="cpu")

    def broken(*args: object) -> None:
        raise CytolensError("the model is broken")

    monkeypatch.setattr(type(model), "_run", broken)
    with pytest.raises(CytolensError, match="the model is broken"):
        list(model.predict_iter(images[:1]))


def _points(image_ids: list[str], classes: list[str], scored: bool) -> Dataset:
    images = [
        AnnotatedImage(f"{key}.png", 50, 40, key, cells=Cells(centres=[[10, 10]], labels=[0],
                                                             scores=[0.9] if scored else None))
        for key in image_ids
    ]
    return Dataset(classes, images)


def test_predictions_sharing_no_image_or_no_class_with_the_truth_are_refused(tmp_path: Path) -> None:
    truth = _points(["a", "b"], ["RBC"], scored=False)
    with pytest.raises(DataError) as error:
        evaluate_datasets(_points(["c"], ["RBC"], scored=True), truth, radius=5, source="pred.csv")
    assert error.value.path == Path("pred.csv")
    assert error.value.problem == (
        "the predictions share no image with the ground truth (predicted: c; ground truth: a, b)"
    )
    with pytest.raises(DataError) as error:
        evaluate_datasets(_points(["a", "b"], ["X"], scored=True), truth, radius=5, source="pred.csv")
    assert error.value.problem.startswith("the predicted classes (X) share none with the ground truth's (RBC)")
    with pytest.raises(CytolensError, match="share no image"):  # without a file (a model's predictions)
        evaluate_datasets(_points(["c"], ["RBC"], scored=True), truth, radius=5)
    unclassified = _points(["a"], ["X"], scored=True)
    unclassified.images[0].cells.labels[:] = -1  # unclassified points are scored by position only
    assert evaluate_datasets(unclassified, truth, radius=5)["recall"] == 0.5


def test_evaluate_cli_names_the_predictions_file(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        Image.new("RGB", (50, 40)).save(tmp_path / f"{name}.png")
    (tmp_path / "truth.csv").write_text("image,x,y,class\na.png,10,10,RBC\nb.png,20,20,RBC\n")
    (tmp_path / "other.csv").write_text("image,x,y,class,score\nc.png,10,10,RBC,0.9\n")
    (tmp_path / "renamed.csv").write_text("image,x,y,class,score\na.png,10,10,X,0.9\nb.png,20,20,X,0.9\n")
    for name, problem in (("other.csv", "share no image"), ("renamed.csv", "the predicted classes (X) share none")):
        args = ["evaluate", "--data", str(tmp_path / "truth.csv"), "--format", "points",
                "--predictions", str(tmp_path / name), "--pred-format", "points", "--radius", "5"]
        assert problem in _one_line_naming(CliRunner().invoke(app, args), tmp_path / name)


def test_a_point_model_with_a_large_min_distance_still_tiles(tmp_path: Path) -> None:
    """Tiles overlap by at least 2 * min_distance (a fixed 64-pixel overlap failed every image when it was 40)."""
    import torch

    from cytolens.models.checkpoint import save_checkpoint
    from cytolens.models.registry import build_architecture

    torch.manual_seed(0)
    meta = {"task": "points", "architecture": "fcn-small", "kwargs": {}, "classes": ["a", "b"],
            "thresholds": {"min_distance": 40, "threshold_rel": 0.3, "threshold_abs": 0.1}}
    save_checkpoint(tmp_path / "points.pt", build_architecture("fcn-small", 2, weights=None), meta)
    model = cytolens.load_model(tmp_path / "points.pt", device="cpu")
    (result,) = model.predict_iter([np.zeros((900, 800, 3), np.uint8)])  # two tiles of 768 pixels per side
    assert isinstance(result, Result) and (result.width, result.height) == (800, 900)
