"""The model card (issue 9): typed records stored as JSON text in the checkpoint, every field checked when read
(one line naming the file and the field), the old flat metadata layout (checkpoint format 1) still read.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import cytolens
from cytolens.errors import ModelError
from cytolens.inference.model import load_model
from cytolens.models.card import (
    BoxThresholds,
    DataRecord,
    Evaluation,
    InputConfig,
    ModelCard,
    PointThresholds,
    Provenance,
    Proximity,
    Report,
    thresholds_type,
)
from cytolens.models.checkpoint import FORMAT_VERSION, load_plain, read_card, save_checkpoint, update_metadata
from cytolens.models.registry import build_architecture, bundled_models

CARDS = {
    "boxes": ModelCard(
        task="boxes",
        architecture="fcos",
        kwargs={"fpn_channels": 32, "head_convs": 1, "min_size": 192, "max_size": 256},
        classes=("WBC", "RBC", "Platelets"),
        thresholds=BoxThresholds(score={"WBC": 0.5, "RBC": 0.45}, nms=0.5, tuned_on="val split"),
        input=InputConfig(mpp=0.075, mpp_source="estimated", size=(256, 192)),
        report=Report((("RBC", "WBC"), ("Platelets", "RBC"))),
        provenance=Provenance(
            recipe={"lr": 0.001, "stages": [{"epochs": 2}]},
            data={"train": DataRecord("bccd:train", "MIT License", "train", 205), "val": None},
            init={"init": "imagenet"},
            training_minutes=1.5,
            notes="2 CPU cores",
        ),
        metrics={"test": {"map50": 0.9, "per_class": {"WBC": {"ap50": 1.0}}}},
        notice="For research use only, not for diagnosis.",
    ),
    "points": ModelCard(
        task="points",
        architecture="fcn-small",
        kwargs={},
        classes=("normal cell", "target cell"),
        thresholds=PointThresholds(threshold_rel=0.3, threshold_abs=0.05, min_distance=8),
        input=InputConfig(size=(96, 96), tile_size=512, overlap=32),
        proximity=Proximity(d=16.0, a=3.0),
        evaluation=Evaluation(radius=12.0),
    ),
}

OLD_LAYOUT = {  # a point model's metadata as checkpoint format 1 wrote it
    "task": "points",
    "architecture": "fcn-small",
    "kwargs": {},
    "classes": ["a", "b"],
    "input_size": [96, 96],
    "mpp": 0.25,
    "mpp_source": "stated by the scanner",
    "thresholds": {"threshold_rel": 0.3, "threshold_abs": 0.1, "min_distance": 8, "radius": 12.0, "tuned_on": "val"},
    "proximity": {"d": 16.0, "a": 3.0},
    "recipe": {"task": "points", "lr": 0.003},
    "init": {"init": "imagenet"},
    "data": {"train": {"name": "x:train", "licence": "MIT License", "split": "train", "images": 4}, "val": None},
    "metrics": {"validation": {"val/f1": 0.5}},
    "cytolens_version": "0.1.0",
    "stored_half": True,
    "notice": "For research use only, not for diagnosis.",
    "report": {"ratios": [["a", "b"]]},
    "training_minutes": 0.2,
    "training_minutes_note": "wall time",
}


def _within(stored: dict, written: dict) -> bool:
    """Whether every entry of ``stored`` is in ``written``, the same (a mapping's entries, recursively)."""
    return all(
        key in written and (_within(value, written[key]) if isinstance(value, dict) else value == written[key])
        for key, value in stored.items()
    )


def _bundled_cards() -> list[tuple[str, str]]:
    """``(bundled name, part)``: a model's own card (part ``model``), a pipeline's two models' cards."""
    parts = []
    for name, path in sorted(bundled_models().items()):
        payload = load_plain(path)
        parts += [(name, "model")] if "card" in payload else [(name, "detector"), (name, "classifier")]
    return parts


@pytest.mark.parametrize(("name", "part"), _bundled_cards())
def test_every_bundled_model_card_passes_the_schema_in_the_current_layout(name, part):
    path = bundled_models()[name]
    payload = load_plain(path)
    if part != "model":  # a pipeline: its figures are its own, each of its models has a card
        assert json.loads(payload["pipeline"])["metrics"]["test"]
        payload = payload[part]
    assert payload["cytolens"] == FORMAT_VERSION and set(payload) == {"cytolens", "card", "state_dict"}
    stored = json.loads(payload["card"])
    card = ModelCard.from_dict(stored, path)
    # every entry known to the schema, none left in the old layout (a field newer than the file may be absent)
    assert _within(stored, card.to_dict())
    assert ModelCard.from_dict(json.loads(card.to_json()), path) == card
    assert isinstance(card.thresholds, thresholds_type(card.task))
    assert card.notice and card.stored_half and (part != "model" or card.metrics["test"])
    assert card.provenance.data["train"].licence.startswith("MIT")


@pytest.mark.parametrize("task", sorted(CARDS))
def test_a_card_round_trips_through_json_and_a_checkpoint(tmp_path, task):
    card = CARDS[task]
    assert ModelCard.from_dict(json.loads(card.to_json()), "model.pt") == card
    path = tmp_path / "model.pt"
    save_checkpoint(path, build_architecture(card.architecture, len(card.classes), weights=None), card, half=True)
    loaded, _ = read_card(path)
    assert loaded == replace(card, cytolens_version=cytolens.__version__, stored_half=True)
    assert json.loads(load_plain(path)["card"]) == loaded.to_dict()  # plain JSON text in the file


def test_the_old_flat_layout_is_read_and_written_anew(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"cytolens": 1, "meta": OLD_LAYOUT, "state_dict": build_architecture("fcn-small", 2).state_dict()}, path)
    card, _ = read_card(path)
    assert card.input == InputConfig(mpp=0.25, mpp_source="stated by the scanner", size=(96, 96))
    assert card.thresholds == PointThresholds(threshold_rel=0.3, threshold_abs=0.1, min_distance=8, tuned_on="val")
    assert card.evaluation == Evaluation(radius=12.0) and card.report == Report((("a", "b"),))
    assert card.provenance == Provenance(
        recipe=OLD_LAYOUT["recipe"],
        data={"train": DataRecord("x:train", "MIT License", "train", 4), "val": None},
        init={"init": "imagenet"},
        training_minutes=0.2,
        notes="wall time",
    )
    assert (card.metrics, card.notice, card.stored_half) == (OLD_LAYOUT["metrics"], OLD_LAYOUT["notice"], True)
    assert len(load_model(path, device="cpu").predict([np.zeros((64, 64, 3), np.uint8)])) == 1
    update_metadata(path, {"training_minutes": 3.0})  # a change in the old layout lands in its section
    payload = load_plain(path)
    assert payload["cytolens"] == FORMAT_VERSION
    assert read_card(path)[0] == replace(card, provenance=replace(card.provenance, training_minutes=3.0))


def test_box_models_without_a_stored_nms_run_with_the_one_they_are_built_with():
    card = {"task": "boxes", "architecture": "fcos", "kwargs": {}, "classes": ["a"]}
    assert ModelCard.from_dict(card, "m.pt").thresholds == BoxThresholds(score=0.0, nms=0.6)
    built = ModelCard.from_dict({**card, "kwargs": {"nms_thresh": 0.45}}, "m.pt")
    assert built.thresholds.nms == 0.45
    assert ModelCard.from_dict({**card, "architecture": "faster-rcnn"}, "m.pt").thresholds.nms == 0.5


GOOD = {"task": "boxes", "architecture": "fcos", "kwargs": {"fpn_channels": 32}, "classes": ["WBC", "RBC"]}


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"colour": "red"}, "checkpoint metadata holds unknown entries 'colour'"),
        ({"input": {"mpp": 0}}, "metadata input.mpp must lie in (0.0, inf], not 0"),
        ({"input": {"size": [256]}}, "metadata input.size must be two whole numbers (width, height)"),
        ({"input": {"size": [256, 19.5]}}, "metadata input.size[1] must be a whole number, not 19.5"),
        ({"input": {"tile_size": 8}}, "metadata input.tile_size must lie in [32, inf], not 8"),
        ({"input": {"tile": 512}}, "metadata input holds unknown entries 'tile' (known: mpp, mpp_source, size, "),
        ({"input": [0.1]}, "metadata input must be a mapping, not [0.1]"),
        ({"thresholds": {"threshold_rel": 0.3}}, "metadata thresholds holds unknown entries 'threshold_rel' "
                                                 "(known: score, nms, tuned_on)"),
        ({"thresholds": {"score": {"Platelets": 0.5}}}, "metadata thresholds.score names 'Platelets', not a class"),
        ({"thresholds": {"nms": True}}, "metadata thresholds.nms must be a number, not True"),
        ({"thresholds": {"tuned_on": 3}}, "metadata thresholds.tuned_on must be text, not 3"),
        ({"evaluation": {"radius": -12}}, "metadata evaluation.radius must lie in (0.0, inf], not -12"),
        ({"report": {"ratios": [["RBC", "Platelets"]]}}, "metadata report.ratios[0] must be two classes of the model"),
        ({"report": {"ratios": "RBC:WBC"}}, "metadata report.ratios must be a list of class pairs"),
        ({"proximity": {"d": 16.0}}, "metadata proximity lacks a"),
        ({"provenance": {"data": {"train": {"licence": 1}}}}, "metadata provenance.data.train.licence must be text"),
        ({"provenance": {"data": {"train": {"images": -1}}}}, "metadata provenance.data.train.images must lie in"),
        ({"provenance": {"training_minutes": "long"}}, "metadata provenance.training_minutes must be a number"),
        ({"provenance": {"recipe": {"lr": object()}}}, "metadata provenance.recipe is not plain JSON-like data"),
        ({"metrics": ["map50", 0.9]}, "metadata metrics must be a mapping"),
        ({"stored_half": "yes"}, "metadata stored_half must be true or false, not 'yes'"),
        ({"notice": ["research"]}, "metadata notice must be text"),
        # the old flat layout's fields are named as that layout spells them
        ({"mpp": 0}, "metadata mpp must lie in (0.0, inf], not 0"),
        ({"input_size": [512, 0]}, "metadata input_size[1] must lie in [1, inf], not 0"),
        ({"data": {"val": {"split": 2}}}, "metadata data.val.split must be text, not 2"),
        ({"training_minutes_note": 1}, "metadata training_minutes_note must be text, not 1"),
    ],
)
def test_card_fields_are_checked_naming_the_file_and_the_field(changes, problem):
    with pytest.raises(ModelError) as error:
        ModelCard.from_dict({**GOOD, **changes}, "model.pt")
    assert str(error.value).startswith(f"model.pt: {problem}"), str(error.value)
    assert "\n" not in str(error.value)


def test_an_old_point_models_radius_is_named_where_it_was(tmp_path):
    old = {**OLD_LAYOUT, "thresholds": {**OLD_LAYOUT["thresholds"], "radius": 0}}
    with pytest.raises(ModelError, match=r"^model.pt: metadata thresholds.radius must lie in \(0.0, inf\], not 0$"):
        ModelCard.from_dict(old, "model.pt")


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"cytolens": 2, "card": "{not json", "state_dict": {}}, "its model card is not JSON text"),
        ({"cytolens": 2, "card": json.dumps([1, 2]), "state_dict": {}}, "checkpoint metadata must be a mapping"),
        ({"cytolens": 2, "meta": GOOD, "state_dict": {}}, "not a cytolens checkpoint (no card)"),
        ({"cytolens": 3, "card": json.dumps(GOOD), "state_dict": {}}, "checkpoint format 3 is not one this cytolens"),
        ({"cytolens": 2, "card": json.dumps(GOOD)}, "not a cytolens checkpoint (no state_dict)"),
    ],
)
def test_a_checkpoint_without_a_readable_card_is_refused_in_one_line(tmp_path, payload, problem):
    path = tmp_path / "model.pt"
    torch.save(payload, path)
    with pytest.raises(ModelError) as error:
        read_card(path)
    assert str(error.value).startswith(f"{path}: {problem}"), str(error.value)


PATCHES = {"task": "patches", "architecture": "lite-classifier", "kwargs": {}, "classes": ["normal", "rare"]}


def test_a_patch_classifier_reweighs_its_softmax_by_its_training_class_shares():
    card = ModelCard.from_dict(
        {**PATCHES, "thresholds": {"class_prior": {"normal": 0.8, "rare": 0.2}, "prior_power": 1.0}}, "model.pt"
    )
    balanced = np.array([[0.5, 0.5], [0.1, 0.9]])
    adjusted = card.thresholds.adjust(balanced, card.classes)
    np.testing.assert_allclose(adjusted, [[0.8, 0.2], [0.08 / 0.26, 0.18 / 0.26]])
    unadjusted = replace(card.thresholds, prior_power=0.0).adjust(balanced, card.classes)
    np.testing.assert_array_equal(unadjusted, balanced)


@pytest.mark.parametrize(
    ("thresholds", "problem"),
    [
        ({"class_prior": 0.5}, "thresholds.class_prior must map class names to their shares of the training patches"),
        ({"class_prior": {"other": 0.5}}, "thresholds.class_prior names 'other', not a class of the model"),
        ({"prior_power": -1}, "thresholds.prior_power must lie in [0.0, 4.0], not -1"),
    ],
)
def test_a_patch_classifiers_class_prior_is_checked(thresholds, problem):
    with pytest.raises(ModelError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        ModelCard.from_dict({**PATCHES, "thresholds": thresholds}, "model.pt")
