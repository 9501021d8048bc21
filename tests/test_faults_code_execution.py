"""Code execution (issue 8): no file cytolens opens runs code when it is unpickled.

Every torch file goes through one loader (``cytolens.models.checkpoint.load_plain``: ``weights_only=True``),
the cytolens checkpoints (``--model``, ``--init``) and Lightning's training checkpoint read by ``--resume``.
Each test plants a file whose unpickling would create a marker file, and checks that the marker is never
created and the refusal is one line naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner, Result

from cytolens.cli.main import app
from cytolens.errors import ModelError
from cytolens.inference.model import load_model
from cytolens.models.checkpoint import read_card
from cytolens.training.init import initial_model
from cytolens.training.recipe import Recipe
from helpers import write_image

pytestmark = pytest.mark.usefixtures("one_thread")


class Payload:
    """An object whose unpickling creates the file ``marker`` (as a hostile file would run any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return open, (str(self.marker), "w")


def tiny_points_data(folder: Path) -> Path:
    """Write two 96x96 images with four dark cells each, their points CSV and a spec (train a, b; val a)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = ["image,x,y,class"]
    yy, xx = np.mgrid[:96, :96]
    for name in ("a", "b"):
        pixels = np.full((96, 96, 3), 230, np.uint8)
        for x, y in rng.uniform(12, 84, size=(4, 2)):
            pixels[(xx - x) ** 2 + (yy - y) ** 2 < 36] = (150, 60, 90)
            rows.append(f"{name}.png,{x:.1f},{y:.1f},cell")
        Image.fromarray(pixels).save(folder / f"{name}.png")
    (folder / "points.csv").write_text("\n".join(rows) + "\n")
    spec = folder / "spec.yaml"
    splits = {"lists": {"train": ["a", "b"], "val": ["a"]}}
    spec.write_text(yaml.safe_dump({"format": "points", "root": "points.csv", "splits": splits}))
    return spec


def tiny_points_recipe(folder: Path) -> Recipe:
    """A point-model recipe on :func:`tiny_points_data` written to ``folder``: a step takes well under a second."""
    return Recipe.from_dict(
        {
            "task": "points", "architecture": "fcn-small", "data": str(tiny_points_data(folder)), "init": "none",
            "batch_size": 2, "warmup_steps": 1, "crop_size": 64, "ema_decay": 0.9, "patience": 2,
            "stages": [{"freeze_blocks": 0, "epochs": 3}],
        }
    )


def write_recipe(recipe: Recipe, path: Path) -> Path:
    """Write ``recipe`` as a YAML file for ``cytolens train --recipe``."""
    path.write_text(yaml.safe_dump(recipe.to_dict()))
    return path


def invoke(*args: object) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def assert_one_line_error(result: Result, *fragments: str) -> str:
    """Exit code 1 and exactly one stderr line ``error: ...`` holding ``fragments``, no traceback; the line."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "payload-ran"


def test_resume_refuses_a_planted_lightning_checkpoint(tmp_path, marker):
    recipe = write_recipe(tiny_points_recipe(tmp_path / "data"), tmp_path / "recipe.yaml")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    torch.save({"epoch": 0, "global_step": 0, "pytorch-lightning_version": "2.6.0", "state_dict": Payload(marker)},
               last)
    result = invoke("train", "--out", tmp_path / "run", "--recipe", recipe, "--resume", "--max-steps", "2",
                    "--device", "cpu")
    line = assert_one_line_error(result, str(last), "refused", "open")
    assert not marker.exists(), line
    assert not (tmp_path / "run" / "model.pt").exists()


@pytest.mark.parametrize("where", ["state_dict", "meta"])
def test_checkpoints_with_a_payload_are_refused_everywhere_they_are_read(tmp_path, marker, where):
    payload = {"cytolens": 1, "meta": {"task": "points"}, "state_dict": {}}
    payload[where] = Payload(marker)
    path = tmp_path / "model.pt"
    torch.save(payload, path)
    for read in (read_card, load_model, lambda p: initial_model(str(p), "fcn-small", ["cell"], {})):
        with pytest.raises(ModelError, match="refused: it holds objects other than tensors") as error:
            read(path)
        assert str(error.value).startswith(f"{path}: ")
    image = write_image(tmp_path / "image.png")
    assert_one_line_error(invoke("predict", image, "--model", path, "--out", tmp_path / "out"), str(path))
    assert not marker.exists()
    assert not (tmp_path / "out").exists()
