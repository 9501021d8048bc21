"""Recipes in sections (common keys, the task's section), the flat layout still read, and the train CLI's options."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cytolens.cli.main import app
from cytolens.errors import CytolensError, DataError
from cytolens.models.checkpoint import read_card
from cytolens.models.registry import bundled_models, resolve_model
from cytolens.training.recipe import BoxSettings, PatchSettings, PointSettings, Recipe

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
POINTS = {"task": "points", "architecture": "fcn-small", "data": "spec.yaml", "lr": 0.003}
PATCHES = {"task": "patches", "data": "crops"}


def _write(tmp_path: Path, values: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_sections_and_the_flat_layout_give_the_same_recipe(tmp_path: Path) -> None:
    sectioned = Recipe.from_yaml(_write(tmp_path, {**POINTS, "points": {"crop_size": 96, "aux_data": "aux"}}))
    flat = Recipe.from_yaml(_write(tmp_path, {**POINTS, "crop_size": 96, "aux_data": "aux", "score_threshold": 0.5}))
    assert sectioned == flat and sectioned.boxes is None
    assert sectioned.points == PointSettings(crop_size=96, aux_data=str((tmp_path / "aux").resolve()))
    stored = sectioned.to_dict()
    assert stored["points"]["crop_size"] == 96 and "boxes" not in stored and "crop_size" not in stored
    assert Recipe.from_dict(stored) == sectioned
    assert Recipe().boxes == BoxSettings() and Recipe.from_dict({"task": "boxes"}).points is None


def _portable(section: BoxSettings | PointSettings) -> BoxSettings | PointSettings:
    """The section with its data paths cut to their last part: the stored recipe holds the trainer's absolute paths."""
    paths = {key: Path(value).name for key in ("aux_data", "partial_data") if (value := getattr(section, key, None))}
    return dataclasses.replace(section, **paths)


@pytest.mark.parametrize(
    ("name", "bundled"),
    [("blood-cells", "blood-cells"), ("rbc-morphology", "rbc-morphology-points"), ("chula-cells", None),
     ("rbc-cells", None), ("blood-cells-v1", None)],
)
def test_checked_in_recipes_and_the_flat_recipes_of_bundled_models_load(name: str, bundled: str | None) -> None:
    recipe = Recipe.from_yaml(CONFIGS / f"{name}.yaml")
    assert getattr(recipe, recipe.task) is not None
    if bundled in bundled_models():
        card, _ = read_card(resolve_model(bundled))
        stored = Recipe.from_dict(card.provenance.recipe, name)  # written in the flat layout, every task's keys
        assert _portable(getattr(stored, stored.task)) == _portable(getattr(recipe, recipe.task))
        assert (stored.stages, stored.lr, stored.kwargs) == (recipe.stages, recipe.lr, recipe.kwargs)


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({**POINTS, "crop_size": 96, "points": {"crop_size": 128}}, "crop_size is given twice: at the top level and"),
        ({**POINTS, "boxes": {"score_threshold": 0.5}}, "a points recipe takes no boxes settings"),
        ({**POINTS, "points": {"radius": 3}}, "unknown points settings: radius"),
        ({**POINTS, "points": [96]}, "points must be a mapping of points settings, not [96]"),
        ({**POINTS, "points": {"crop_size": 8}}, "points crop_size must lie in [32, inf], not 8"),
        ({**POINTS, "points": {"ignore_unlabelled_cells": "no"}}, "points ignore_unlabelled_cells must be true or"),
        ({"data": "x", "boxes": {"score_threshold": 2}}, "boxes score_threshold must lie in [0, 1], not 2"),
        ({"data": "x", "crop_size": 8}, "crop_size must lie in [32, inf], not 8"),  # flat keys of other tasks too
        ({**PATCHES, "patches": {"side": 64, "side_um": 8}}, "patches: give side (pixels) or side_um (µm), not both"),
        ({**PATCHES, "patches": {"touching": 40}}, "patches touching makes patches of several types: set multi_label"),
        ({**PATCHES, "patches": {"single_only": True, "multi_label": True}}, "patches single_only leaves out the"),
        ({**PATCHES, "patches": {"views": 10, "max_shift": 0}}, "patches views beyond 8 shift the patch centre"),
        ({**PATCHES, "patches": {"views": 13}}, "patches views must lie in [1, 12], not 13"),
        ({**PATCHES, "patches": {"size": 16}}, "patches size must lie in [32, inf], not 16"),
        ({**PATCHES, "patches": {"max_angle": 270}}, "patches max_angle must lie in [0, 180], not 270"),
        ({**PATCHES, "patches": {"scale_jitter": 1}}, "patches scale_jitter must lie in [0, 1), not 1"),
        ({**PATCHES, "patches": {"balanced": "yes"}}, "patches balanced must be true or false, not 'yes'"),
        ({**PATCHES, "patches": {"fast_mode": True}}, "unknown patches settings: fast_mode"),
        ({**PATCHES, "patches": {"fast": True, "colour_jitter": 1}}, "patches fast caches the features of fixed views"),
        ({**PATCHES, "patches": {"fast": True, "fast_views": 9, "max_shift": 0}}, "patches views beyond 8 shift"),
        ({**PATCHES, "kwargs": {"multi_label": True}}, "kwargs multi_label: set multi_label in the patches section"),
        ({**PATCHES, "architecture": "fcos"}, "architecture 'fcos' does not serve task 'patches'"),
    ],
)
def test_sections_are_checked_like_the_rest_naming_the_recipe(tmp_path: Path, values: dict, problem: str) -> None:
    path = _write(tmp_path, values)
    with pytest.raises(DataError) as error:
        Recipe.from_yaml(path)
    assert error.value.path == path and error.value.problem.startswith(problem)


def test_a_patches_recipe_takes_the_classifier_and_its_section() -> None:
    recipe = Recipe.from_dict({**PATCHES, "patches": {"side": 64, "touching": 40, "multi_label": True, "size": 96}})
    assert recipe.architecture == "lite-classifier" and recipe.boxes is None  # the task's first architecture
    assert recipe.patches == PatchSettings(side=64.0, touching=40.0, multi_label=True, size=96)
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    assert Recipe.from_dict({"task": "points", "data": "x"}).architecture == "fcn-lite0"


def test_a_section_of_another_task_is_refused_when_built_in_code() -> None:
    with pytest.raises(CytolensError, match="a points recipe takes no boxes settings"):
        Recipe(task="points", architecture="fcn-small", boxes=BoxSettings())


def _recipe_given_to_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: object) -> tuple:
    """Run ``cytolens train ARGS`` with training replaced by a stub; the recipe it was given and the CLI result."""
    import cytolens.training.train

    given = []

    def stub(recipe: Recipe, out: Path, **options: object) -> Path:
        given.append(recipe)
        raise CytolensError("stub: no training")

    monkeypatch.setattr(cytolens.training.train, "train", stub)
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), *map(str, args)])
    return (given[0] if given else None), result


def test_train_options_reach_the_common_keys_and_the_points_section(tmp_path, monkeypatch) -> None:
    recipe, _ = _recipe_given_to_training(
        tmp_path, monkeypatch, "--recipe", CONFIGS / "rbc-morphology.yaml", "--aux-data", tmp_path, "--aux-weight", 2,
        "--lr", 0.01, "--epochs", 10,
    )
    assert recipe.lr == 0.01 and recipe.epochs == 10 and recipe.points.min_distance == 10  # the recipe's own
    assert recipe.points.aux_data == str(tmp_path) and recipe.points.aux_weight == 2.0
    recipe, _ = _recipe_given_to_training(
        tmp_path, monkeypatch, "--data", tmp_path, "--format", "voc", "--task", "points", "--architecture", "fcn-small"
    )
    assert recipe.points == PointSettings() and recipe.boxes is None  # the default recipe's boxes section is left
    recipe, result = _recipe_given_to_training(tmp_path, monkeypatch, "--data", tmp_path, "--aux-data", tmp_path)
    assert recipe is None and result.exit_code == 2 and "Invalid value for '--aux-data'" in result.output
