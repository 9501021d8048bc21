"""A few-iteration box-detector training run on 4 BCCD images: the loss drops, the checkpoint loads, resume works."""

from __future__ import annotations

import pytest
import torch
import yaml

from cytolens.inference.model import load_model
from cytolens.models.card import BoxThresholds
from cytolens.models.checkpoint import read_card
from cytolens.training.box_data import BoxDataset, collate
from cytolens.training.recipe import Recipe
from cytolens.training.stages import InputSize, Stage
from cytolens.training.train import train

IDS = ["BloodImage_00000", "BloodImage_00001", "BloodImage_00002", "BloodImage_00003"]


@pytest.fixture
def tiny_spec(bccd, tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump({"format": "voc", "root": str(bccd), "name": "bccd-tiny",
                                    "splits": {"lists": {"train": IDS, "val": IDS[:2]}}}))
    return spec


def _recipe(spec, epochs: int) -> Recipe:
    return Recipe(
        task="boxes", architecture="fcos", data=str(spec), train_split="train", val_split="val",
        kwargs={"fpn_channels": 32, "head_convs": 1, "min_size": 192, "max_size": 256},
        stages=[Stage(freeze_blocks=8, epochs=1, max_size=256), Stage(freeze_blocks=0, epochs=epochs - 1)],
        batch_size=2, lr=2e-3, warmup_steps=1, ema_decay=0.0, seed=0,
    )


def _loss(model, spec) -> float:
    from cytolens.io.spec import load_data

    dataset = BoxDataset(load_data(spec, split="train"), InputSize([], 256), train=False)
    images, targets = collate([dataset[i] for i in range(4)])
    targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
    model.train()
    with torch.no_grad():
        return float(sum(model(images, targets).values()))


def test_training_lowers_loss_and_writes_a_loadable_checkpoint(tiny_spec, tmp_path):
    torch.set_num_threads(2)
    recipe = _recipe(tiny_spec, epochs=6)
    from cytolens.training.init import initial_model

    start, *_ = initial_model("imagenet", "fcos", ["WBC", "RBC", "Platelets"], recipe.kwargs)
    torch.manual_seed(0)
    before = _loss(start, tiny_spec)
    path = train(recipe, tmp_path / "run", progress=False)
    card, _ = read_card(path)
    assert card.classes == ("WBC", "RBC", "Platelets") and card.task == "boxes"
    assert card.thresholds == BoxThresholds(score=0.3, nms=0.6) and card.input.size == (256, 192)
    assert card.input.tile_size == 640  # its 640x480 fields run whole, resized to the input as in training
    assert card.input.colour.images == 4  # the colours of the training images, to warn about foreign input
    provenance = card.provenance
    assert provenance.recipe["stages"][0]["freeze_blocks"] == 8 and provenance.data["train"].images == 4
    assert provenance.data["val"].split == "val" and provenance.init == {"init": "imagenet"}
    assert provenance.training_minutes is not None
    assert "val/map50" in card.metrics["validation"]
    model = load_model(path, device="cpu")
    torch.manual_seed(0)
    after = _loss(model.network, tiny_spec)
    assert after < 0.8 * before, (before, after)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "run" / "logs").is_dir()


def test_resume_continues_from_the_last_epoch(tiny_spec, tmp_path):
    torch.set_num_threads(2)
    out = tmp_path / "run"
    train(_recipe(tiny_spec, epochs=2), out, progress=False)
    first = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    train(_recipe(tiny_spec, epochs=3), out, resume=True, progress=False)
    resumed = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert first["epoch"] == 1 and resumed["epoch"] == 2
    assert resumed["global_step"] == first["global_step"] + 2
