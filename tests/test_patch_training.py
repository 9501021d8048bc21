"""Training the patch task: patches of a recipe, balanced sampling, the module, short runs on real crops and cells."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from cytolens.cli.main import app
from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.data.patches import crop_patch
from cytolens.errors import DataError
from cytolens.io.images import read_image
from cytolens.io.spec import load_data
from cytolens.models.card import PatchGeometry
from cytolens.models.checkpoint import load_network, read_card, save_checkpoint
from cytolens.models.registry import build_architecture
from cytolens.training.class_balance import balanced_weights
from cytolens.training.patch_data import PatchDataset, balanced_sampler, patch_geometry
from cytolens.training.patch_module import PatchModule, tune_thresholds
from cytolens.training.recipe import PatchSettings, Recipe
from cytolens.training.stages import InputSize, Stage
from cytolens.training.train import train

pytestmark = pytest.mark.usefixtures("one_thread")

CROPS = {"circular": ["c0001", "c0002"], "elongated": ["e0001", "e0002"], "other": ["o0001", "o0002"]}


@pytest.fixture
def crops(erythrocytesidb: Path, tmp_path: Path) -> Path:
    """Six real erythrocytesIDB crops (80x80), two per class, as a class-folder dataset."""
    root = tmp_path / "crops"
    for name, stems in CROPS.items():
        (root / name).mkdir(parents=True)
        for stem in stems:
            os.link(erythrocytesidb / name / f"{stem}.jpg", root / name / f"{stem}.jpg")
    return root


def _size(side: int) -> InputSize:
    return InputSize([Stage(0, 1)], side)


def _chula_image(path: Path, centres: list[tuple[float, float]], labels: list[int]) -> AnnotatedImage:
    return AnnotatedImage(path, 640, 480, cells=Cells(centres=np.array(centres, float), labels=np.array(labels)))


def test_patches_of_points_in_pixels_or_um_and_touching_clusters(tmp_path: Path) -> None:
    image = _chula_image(tmp_path / "a.png", [(100, 100), (120, 100), (300, 300)], [0, 1, 1])
    data = Dataset(["a", "b"], [image])
    settings = PatchSettings(side=40, touching=30, multi_label=True, single_only=True)
    validation = PatchDataset(data, settings, _size(32), train=False).patches
    assert [(patch.labels, patch.cells, patch.side) for patch in validation] == [((0, 1), 2, 60.0), ((1,), 1, 40.0)]
    assert [patch.cells for patch in PatchDataset(data, settings, _size(32), train=True).patches] == [1]  # single
    with pytest.raises(DataError, match="a.png: holds a patch of several types: set patches multi_label: true"):
        PatchDataset(data, PatchSettings(side=40, touching=30), _size(32), train=False)
    with pytest.raises(DataError, match="a.png: has cells marked by a point: give patches side or side_um"):
        PatchDataset(data, PatchSettings(), _size(32), train=False)
    with pytest.raises(DataError, match="a.png: states no µm/px, which patches side_um needs"):
        PatchDataset(data, PatchSettings(side_um=8.0), _size(32), train=False)
    scaled = Dataset(["a", "b"], [AnnotatedImage(tmp_path / f"{mpp}.png", 640, 480, mpp=mpp, cells=image.cells)
                                  for mpp in (0.1, 0.2, 0.2)])
    sides = [patch.side for patch in PatchDataset(scaled, PatchSettings(side_um=8.0), _size(32), False).patches]
    assert sides == [80.0] * 3 + [40.0] * 6
    geometry, mpp = patch_geometry(scaled, PatchSettings(side_um=8.0, views=8))
    assert mpp == 0.2 and geometry == PatchGeometry(side=40.0, pad=0.1, views=8, shift=4.0)  # at the median µm/px


def test_the_touching_cell_recipes_differ_only_in_training_on_single_cells() -> None:
    configs = Path(__file__).resolve().parents[1] / "configs"
    mixed, single = (Recipe.from_yaml(configs / f"chula-touching-{name}.yaml") for name in ("mixed", "single"))
    assert mixed.patches.touching == 36.0 and mixed.patches.multi_label and mixed.patches.fast
    assert dataclasses.replace(single, patches=dataclasses.replace(single.patches, single_only=False)) == mixed


def test_train_task_patches_alone_takes_the_classifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cytolens.training.train

    given = []
    monkeypatch.setattr(cytolens.training.train, "train", lambda recipe, out, **options: given.append(recipe))
    args = ["train", "--task", "patches", "--data", str(tmp_path), "--format", "folders", "--out", str(tmp_path / "r")]
    CliRunner().invoke(app, args)
    assert given[0].architecture == "lite-classifier" and given[0].patches == PatchSettings() and given[0].boxes is None


def test_samples_are_views_of_the_patch_in_training_and_the_patch_itself_in_validation(chula: Path) -> None:
    image = _chula_image(chula / "Dataset" / "10.jpg", [(488, 116), (366, 88)], [8, 8])
    data = Dataset([str(i) for i in range(13)], [image])
    validation = PatchDataset(data, PatchSettings(side=64), _size(48), train=False)
    sample = validation[0]
    expected = crop_patch(read_image(image.path), (488, 116), 64, 48)
    assert sample["image"].shape == (3, 48, 48) and sample["target"].item() == 8
    np.testing.assert_allclose(sample["image"].permute(1, 2, 0).numpy() * 255, expected, atol=1e-3)
    torch.manual_seed(0)
    training = PatchDataset(data, PatchSettings(side=64, colour_jitter=1.0, scale_jitter=0.2), _size(48), True)
    first, second = training[0]["image"], training[0]["image"]
    assert first.shape == (3, 48, 48) and not torch.equal(first, second)  # a new random view each time
    multi = PatchDataset(data, PatchSettings(side=64, multi_label=True), _size(48), train=False)
    assert multi[1]["target"].tolist() == [0.0] * 8 + [1.0] + [0.0] * 4


def test_balanced_sampling_draws_every_class_equally_often(tmp_path: Path) -> None:
    labels = [(0,)] * 90 + [(1,)] * 9 + [(2,)]
    weights = balanced_weights(labels)
    assert np.allclose([weights[:90].sum(), weights[90:99].sum(), weights[99]], 100 / 3)
    centres = [(10.0 * i, 10.0) for i in range(100)]
    image = _chula_image(tmp_path / "a.png", centres, [label for (label,) in labels])
    dataset = PatchDataset(Dataset(["a", "b", "c"], [image]), PatchSettings(side=8), _size(32), train=True)
    torch.manual_seed(0)
    drawn = np.array([dataset.patches[i].labels[0] for _ in range(100) for i in balanced_sampler(dataset)])
    assert np.allclose(np.bincount(drawn) / len(drawn), 1 / 3, atol=0.015)
    # multi-label: a patch counts as its rarest type, so the patches holding the rare type 2 make up a third
    multi = balanced_weights([(0,)] * 60 + [(0, 1)] * 30 + [(0, 2)] * 10)
    assert np.isclose(multi[90:].sum() / multi.sum(), 1 / 3)


def test_per_type_thresholds_are_tuned_for_f1_and_written_to_the_card() -> None:
    y_true = np.array([[1, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 0]])
    y_score = np.array([[0.9, 0.1, 0.3], [0.8, 0.2, 0.2], [0.1, 0.35, 0.25], [0.2, 0.3, 0.1]])
    thresholds = tune_thresholds(y_true, y_score)
    assert thresholds.tolist() == [0.5, 0.35, 0.3]  # type 0: every threshold from 0.25 to 0.8 is right; 0.5 nearest
    model = build_architecture("lite-classifier", 3, weights=None, multi_label=True)
    module = PatchModule(model, ["a", "b", "c"], multi_label=True)
    figures = module.figures(y_true, y_score)
    assert figures["exact_match"] == 1.0 and module.tuned_thresholds().score == {"a": 0.5, "b": 0.35, "c": 0.3}
    assert PatchModule(model, ["a", "b", "c"]).tuned_thresholds().score == 0.5  # single-label: not tuned


def _loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """Cross-entropy of ``model`` on a fixed batch (batch statistics, as in training; no dropout)."""
    model.train()
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(batch["image"]), batch["target"]).item()


def test_train_on_a_crop_folder_lowers_the_loss_and_writes_a_patch_model(crops: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    start = build_architecture("lite-classifier", 3, dropout=0.0)  # ImageNet body, fresh head
    card = {"task": "patches", "architecture": "lite-classifier", "kwargs": {"dropout": 0.0},
            "classes": list(CROPS)}
    save_checkpoint(tmp_path / "start.pt", start, card)
    recipe = {"task": "patches", "data": str(crops), "format": "folders", "init": str(tmp_path / "start.pt"),
              "batch_size": 6, "lr": 0.003, "warmup_steps": 1, "ema_decay": 0.0, "stages": [{"epochs": 8}],
              "patches": {"size": 48, "max_angle": 0, "max_shift": 0, "views": 8}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["train", "--recipe", str(tmp_path / "recipe.yaml"), "--out",
                                      str(tmp_path / "run"), "--task", "patches"])
    assert result.exit_code == 0, result.output
    model, card = load_network(tmp_path / "run" / "model.pt")
    assert card.task == "patches" and card.classes == tuple(CROPS) and card.input.size == (48, 48)
    assert card.patch == PatchGeometry(side=None, pad=0.1, views=8, shift=0.0) and card.kwargs["multi_label"] is False
    assert card.provenance.recipe["patches"]["size"] == 48
    data = load_data(crops, "folders")
    samples = PatchDataset(data, PatchSettings(), _size(48), train=False)
    batch = torch.utils.data.default_collate([samples[i] for i in range(len(samples))])
    before, _ = load_network(tmp_path / "start.pt")
    assert _loss(model, batch) < _loss(before, batch)


def test_multi_label_training_on_touching_chula_cells_tunes_thresholds(chula: Path, tmp_path: Path) -> None:
    spec = {"format": "chula", "root": str(chula), "splits": {"lists": {"train": ["2", "4"], "val": ["5"]}}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    recipe = Recipe.from_dict({
        "task": "patches", "architecture": "lite-classifier", "data": str(tmp_path / "spec.yaml"), "init": "none",
        "batch_size": 64, "warmup_steps": 1, "ema_decay": 0.0, "stages": [{"epochs": 1}],
        "patches": {"side": 64, "touching": 40, "multi_label": True, "size": 32},
    })
    card, _ = read_card(train(recipe, tmp_path / "run", progress=False))
    validation = card.metrics["validation"]
    assert card.kwargs["multi_label"] is True and card.patch.side == 64.0 and card.input.size == (32, 32)
    assert 0 <= validation["val/exact_match"] <= 1 and 0 <= validation["val/macro_f1"] <= 1
    assert isinstance(card.thresholds.score, dict) and card.thresholds.tuned_on.startswith("validation patches")


def test_fast_mode_trains_the_head_on_cached_features_and_writes_the_same_kind_of_model(crops, tmp_path) -> None:
    spec = {"format": "folders", "root": str(crops), "splits": {"ratio": {"train": 0.5, "val": 0.5}, "seed": 1}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    start = build_architecture("lite-classifier", 3, weights=None)
    save_checkpoint(tmp_path / "start.pt", start, {"task": "patches", "architecture": "lite-classifier",
                                                   "kwargs": {}, "classes": list(CROPS)})
    recipe = Recipe.from_dict({
        "task": "patches", "data": str(tmp_path / "spec.yaml"), "init": str(tmp_path / "start.pt"),
        "batch_size": 8, "stages": [{"epochs": 5}],
        "patches": {"size": 32, "fast": True, "fast_views": 2, "views": 2},
    })
    model, card = load_network(train(recipe, tmp_path / "run", progress=False))
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == ["model.pt"]  # no loop, no checkpoints
    assert card.task == "patches" and card.patch.views == 2 and card.provenance.recipe["patches"]["fast"] is True
    assert 0 <= card.metrics["validation"]["val/accuracy"] <= 1 and card.metrics["validation"]["epoch"] >= 0
    cached = list((Path(os.environ["CYTOLENS_CACHE_DIR"]) / "features").rglob("*.npz"))
    assert len(cached) == 6  # one file per image: its patch under both views
    trained, initial = model.state_dict(), start.state_dict()
    assert torch.equal(trained["body.conv_stem.weight"], initial["body.conv_stem.weight"])  # the body as built
    assert not torch.equal(trained["out.1.weight"], initial["out.1.weight"])  # the head trained


def test_cross_validation_trains_each_fold_and_sums_them_up(crops: Path, tmp_path: Path) -> None:
    recipe = {"task": "patches", "data": str(crops), "format": "folders", "init": "none", "batch_size": 3,
              "warmup_steps": 1, "ema_decay": 0.0, "stages": [{"epochs": 1}], "patches": {"size": 32}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "cv"
    args = ["train", "--recipe", str(tmp_path / "recipe.yaml"), "--out", str(out), "--folds", "2", "--max-steps", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "cv.json").read_text())
    assert [fold["val_images"] for fold in summary["per_fold"]] == [3, 3] and summary["seed"] == 0
    assert set(summary["mean"]["accuracy"]) == {"mean", "std"} and (out / "fold1" / "model.pt").is_file()
    assert any(line.startswith("mean ± std") for line in result.output.splitlines()) and "macro_f1" in result.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "is not empty; use --resume" in again.output
