"""Integrity (issue 8): a damaged, truncated or ill-described file is refused in one line, never used.

- checkpoints (``model.pt``) and training checkpoints (``last.ckpt``) are checked against their zip CRCs
  and refused when damaged or truncated (``cytolens.models.checkpoint.load_plain``);
- a checkpoint's model card is checked field by field when read (``ModelCard.from_dict``), in either
  checkpoint format, and builder arguments the architecture rejects are reported naming the file;
- an ONNX cache file that does not load is exported again;
- a training run folder holds one run: an earlier one is continued (``resume``) or replaced (``exist_ok``),
  never mixed; ``max_steps`` is -1 or at least 1.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cytolens.errors import CytolensError, DataError, ModelError
from cytolens.inference.model import load_model
from cytolens.inference.onnx_boxes import cache_dir
from cytolens.models.checkpoint import StoredModel, read_card, read_stored, save_checkpoint
from cytolens.models.registry import build_architecture, bundled_models
from cytolens.training.train import train
from helpers import write_image
from test_faults_code_execution import assert_one_line_error, invoke, tiny_points_recipe, write_recipe
from tiny_detector import tiny_detector

pytestmark = pytest.mark.usefixtures("one_thread")


def flip_bytes_inside(path: Path, count: int = 8) -> None:
    """Invert ``count`` bytes in the middle of the data of the largest entry of the zip archive ``path``."""
    with zipfile.ZipFile(path) as archive:
        entry = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[entry.header_offset + 26 : entry.header_offset + 30])
    start = entry.header_offset + 30 + name_length + extra_length + entry.file_size // 2
    data[start : start + count] = bytes(255 - value for value in data[start : start + count])
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# --- checkpoints: CRCs and truncation ---------------------------------------------------------------


def test_bundled_models_pass_the_integrity_check():
    for path in bundled_models().values():
        stored = read_stored(path)
        for part in [stored] if isinstance(stored, StoredModel) else [stored.detector, stored.classifier]:
            assert part.card.classes and part.state


@pytest.mark.parametrize(("damage", "problem"), [(flip_bytes_inside, "fails its CRC check"), (truncate, "truncated")])
def test_a_damaged_checkpoint_is_refused_not_used(tmp_path, damage, problem):
    path = tiny_detector(tmp_path / "model.pt")
    damage(path)
    with pytest.raises(ModelError, match=problem) as error:
        load_model(path, device="cpu")
    assert str(error.value).startswith(f"{path}: ")
    image = write_image(tmp_path / "image.png")
    assert_one_line_error(invoke("predict", image, "--model", path, "--out", tmp_path / "out"), str(path), problem)


def test_models_lists_the_bundled_models_that_load_and_warns_of_a_damaged_one(tmp_path, monkeypatch):
    tiny_detector(tmp_path / "good.pt")
    flip_bytes_inside(tiny_detector(tmp_path / "damaged.pt"))
    monkeypatch.setattr("cytolens.models.registry.BUNDLED_DIR", tmp_path)
    result = invoke("models", "--json")
    assert result.exit_code == 0, result.output
    assert [model["name"] for model in json.loads(result.stdout)["models"]] == ["good"]
    assert f"{tmp_path / 'damaged.pt'}: damaged" in result.stderr and "not listed" in result.stderr


# --- checkpoints: metadata schema -------------------------------------------------------------------

GOOD_META = {"task": "boxes", "architecture": "fcos", "kwargs": {"fpn_channels": 32, "head_convs": 1},
             "classes": ["WBC", "RBC"]}


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"kwargs": ["fpn_channels", 32]}, "metadata kwargs must map argument names"),
        ({"kwargs": {"no_such_argument": 1}}, "metadata kwargs do not build fcos"),
        ({"kwargs": {"fpn_channels": "wide"}}, "metadata kwargs do not build fcos"),
        ({"classes": "WBC"}, "metadata classes must be a non-empty list of names"),
        ({"classes": [0, 1]}, "metadata classes: class name must be text, not 0"),
        ({"classes": ["WBC", "R\x00BC"]}, "metadata classes: class name 'R\\x00BC' holds a control character"),
        ({"classes": []}, "metadata classes must be a non-empty list of names"),
        ({"classes": ["WBC", "WBC"]}, "metadata classes names a class twice"),
        ({"architecture": 3}, "metadata architecture 3 is not one of"),
        ({"architecture": "unet"}, "metadata architecture 'unet' is not one of"),
        ({"task": "points"}, "metadata task 'points' is not 'boxes'"),
        ({"task": None}, "metadata task None is not 'boxes'"),
        ({"thresholds": {"score": 2.0}}, "metadata thresholds.score must lie in [0.0, 1.0]"),
        ({"thresholds": {"score": {"WBC": float("nan")}}}, "metadata thresholds.score['WBC'] must be a finite"),
        ({"thresholds": [0.3]}, "metadata thresholds must be a mapping"),
        ({"mpp": -1}, "metadata mpp must lie in (0.0, inf]"),
        ({"data": "bccd"}, "metadata data must be a mapping"),
        ("empty", "checkpoint metadata lacks task, architecture, kwargs, classes"),
    ],
)
@pytest.mark.parametrize("version", [1, 2])  # metadata as a mapping (format 1), the card as JSON text (2)
def test_ill_described_checkpoints_are_refused_naming_the_file_and_field(tmp_path, changes, problem, version):
    path = tmp_path / "model.pt"
    meta = {} if changes == "empty" else {**GOOD_META, **changes}
    stored = {"meta": meta} if version == 1 else {"card": json.dumps(meta)}
    torch.save({"cytolens": version, **stored, "state_dict": {}}, path)
    with pytest.raises(ModelError) as error:
        load_model(path, device="cpu")
    assert str(error.value).startswith(f"{path}: {problem}"), str(error.value)
    assert "\n" not in str(error.value)
    if "do not build" not in problem:  # such metadata is never written in the first place
        with pytest.raises(ModelError, match=f"{tmp_path / 'again.pt'}: .*metadata"):
            save_checkpoint(tmp_path / "again.pt", torch.nn.Linear(1, 1), meta)
        assert not (tmp_path / "again.pt").exists()


def test_an_empty_metadata_checkpoint_is_one_line_from_the_cli(tmp_path):
    path = tmp_path / "metaempty.pt"
    torch.save({"cytolens": 1, "meta": {}, "state_dict": {}}, path)
    image = write_image(tmp_path / "image.png")
    result = invoke("predict", image, "--model", path, "--out", tmp_path / "out")
    assert_one_line_error(result, f"{path}: checkpoint metadata lacks task, architecture, kwargs, classes")


def test_weights_that_are_not_tensors_are_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"cytolens": 1, "meta": GOOD_META, "state_dict": {"head.weight": [1.0, 2.0]}}, path)
    with pytest.raises(ModelError, match="state_dict must map names to tensors"):
        read_card(path)


# --- ONNX cache --------------------------------------------------------------------------------------


def test_a_truncated_onnx_cache_file_is_exported_again(tmp_path, caplog, monkeypatch):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("CYTOLENS_CACHE_DIR", str(tmp_path / "cache"))  # this test's exports only
    path = tiny_detector(tmp_path / "model.pt")
    pixels = np.full((96, 128, 3), 200, np.uint8)
    expected = load_model(path, device="cpu", backend="onnx").predict([pixels], score_threshold=0)[0]
    (cached,) = cache_dir().glob("*.onnx")
    size = cached.stat().st_size
    truncate(cached)
    model = load_model(path, device="cpu", backend="onnx")
    with caplog.at_level("WARNING", logger="cytolens"):
        found = model.predict([pixels], score_threshold=0)[0]
    assert model.backend == "onnx" and len(found.cells.boxes) == len(expected.cells.boxes) > 0
    np.testing.assert_allclose(found.cells.scores, expected.cells.scores, atol=1e-6)
    assert cached.stat().st_size == size  # rebuilt in place, whole
    assert any("cached ONNX model does not load" in record.getMessage() for record in caplog.records)


# --- training run folders and max_steps -------------------------------------------------------------


@pytest.fixture
def recipe(tmp_path):
    return tiny_points_recipe(tmp_path / "data")


def _plant_earlier_run(out: Path) -> None:
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.ckpt").write_bytes(b"earlier run")
    (out / "logs" / "version_0").mkdir(parents=True)
    (out / "model.pt").write_bytes(b"earlier model")


def test_an_earlier_run_is_refused_without_resume_or_exist_ok(tmp_path, recipe):
    out = tmp_path / "run"
    _plant_earlier_run(out)
    with pytest.raises(DataError) as error:
        train(recipe, out, progress=False, max_steps=1)
    assert str(error.value) == f"{out}: holds an earlier run; use --resume to continue it or --exist-ok to replace it"
    assert (out / "model.pt").read_bytes() == b"earlier model"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="other: is not empty"):
        train(recipe, tmp_path / "other", progress=False, max_steps=1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="file: is a file, not a run folder"):
        train(recipe, tmp_path / "file", progress=False, max_steps=1)
    with pytest.raises(CytolensError, match="resume continues the earlier run and exist-ok replaces it"):
        train(recipe, out, resume=True, exist_ok=True, progress=False, max_steps=1)


def test_exist_ok_replaces_the_earlier_run_whole(tmp_path, recipe):
    out = tmp_path / "run"
    _plant_earlier_run(out)
    (out / "notes.txt").write_text("the user's own file")
    model = train(recipe, out, exist_ok=True, progress=False, max_steps=1)
    assert sorted(path.name for path in (out / "checkpoints").iterdir()) == ["epoch=0.ckpt", "last.ckpt"]
    assert [path.name for path in (out / "logs").iterdir()] == ["version_0"]
    read_card(model)
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 1
    assert (out / "notes.txt").read_text() == "the user's own file"


def test_exist_ok_keeps_the_earlier_run_when_the_new_one_cannot_start(tmp_path, recipe):
    out = tmp_path / "run"
    _plant_earlier_run(out)
    recipe.data = str(tmp_path / "missing.yaml")
    with pytest.raises(DataError, match="missing.yaml"):
        train(recipe, out, exist_ok=True, progress=False, max_steps=1)
    assert (out / "model.pt").read_bytes() == b"earlier model"


@pytest.mark.parametrize("max_steps", [0, -5, 1.5, True, float("nan")])
def test_max_steps_is_minus_one_or_at_least_one(tmp_path, recipe, max_steps):
    with pytest.raises(CytolensError, match=r"max_steps \(-1: no limit\) must"):
        train(recipe, tmp_path / "run", max_steps=max_steps, progress=False)
    assert not (tmp_path / "run").exists()


# --- resume: damaged, truncated or foreign last.ckpt ------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    """A one-step run of the tiny point recipe and its recipe file."""
    folder = tmp_path_factory.mktemp("finished")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    recipe = tiny_points_recipe(folder / "data")
    train(recipe, folder / "run", max_steps=1, progress=False)
    torch.set_num_threads(threads)
    return folder / "run", write_recipe(recipe, folder / "recipe.yaml")


def _copy_run(run: Path, to: Path) -> Path:
    for path in run.rglob("*"):
        if path.is_file():
            (to / path.relative_to(run)).parent.mkdir(parents=True, exist_ok=True)
            (to / path.relative_to(run)).write_bytes(path.read_bytes())
    return to


def test_resume_of_a_moved_run_continues_it_in_place(tmp_path, finished_run):
    run, recipe = finished_run
    out = _copy_run(run, tmp_path / "run")  # a run folder copied from elsewhere: its own last.ckpt is continued
    result = invoke("train", "--out", out, "--recipe", recipe, "--resume", "--max-steps", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    names = sorted(path.name for path in (out / "checkpoints").iterdir())
    assert names == ["epoch=1.ckpt", "last.ckpt"]  # no last-v1.ckpt beside a stale last.ckpt


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (truncate, "not a loadable checkpoint (truncated"),
        (flip_bytes_inside, "fails its CRC check"),
        (lambda path: torch.save({"pytorch-lightning_version": "2.6.0", "state_dict": {}}, path), "another model"),
        (lambda path: torch.save([1, 2], path), "not a Lightning training checkpoint"),
    ],
)
def test_resume_refuses_a_bad_last_checkpoint_in_one_line(tmp_path, finished_run, damage, problem):
    run, recipe = finished_run
    out = _copy_run(run, tmp_path / "run")
    last = out / "checkpoints" / "last.ckpt"
    damage(last)
    result = invoke("train", "--out", out, "--recipe", recipe, "--resume", "--max-steps", "2", "--device", "cpu")
    assert_one_line_error(result, f"{last}: ", problem)


def test_resume_without_a_last_checkpoint_names_it(tmp_path, recipe):
    with pytest.raises(DataError, match="last.ckpt: nothing to resume from"):
        train(recipe, tmp_path / "run", resume=True, progress=False)


def test_the_checkpoint_loader_builds_what_the_metadata_describes(tmp_path):
    model = build_architecture("fcos", 2, weights=None, fpn_channels=32, head_convs=1)
    save_checkpoint(tmp_path / "model.pt", model, GOOD_META)
    assert load_model(tmp_path / "model.pt", device="cpu", backend="torch").classes == ["WBC", "RBC"]
