"""Fine-tuning from a base model: its weights load where they fit, its class heads start fresh for other classes."""

from __future__ import annotations

import pytest
import torch

from cytolens.models.checkpoint import save_checkpoint
from cytolens.models.registry import build_architecture
from cytolens.training.init import initial_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("classes", "fresh"), [(["a", "b"], False), (["a", "b", "c"], True), (["x", "y"], True)])
def test_class_heads_start_fresh_only_when_the_classes_change(tmp_path, classes, fresh):
    torch.manual_seed(0)
    base = build_architecture("fcn-small", num_classes=2, weights=None)
    meta = {"task": "points", "architecture": "fcn-small", "kwargs": {}, "classes": ["a", "b"]}
    save_checkpoint(tmp_path / "base.pt", base, meta)
    model, architecture, _, info = initial_model(str(tmp_path / "base.pt"), "fcn-small", classes, {})
    assert architecture == "fcn-small" and info["base_classes"] == ["a", "b"]
    own, old = model.state_dict(), base.state_dict()
    assert torch.equal(own["stem.0.weight"], old["stem.0.weight"])  # the rest of the network is the base's
    same_head = own["class_head.weight"].shape == old["class_head.weight"].shape and torch.equal(
        own["class_head.weight"], old["class_head.weight"]
    )
    assert same_head is not fresh


def test_the_recipe_kwargs_win_over_the_base_models(tmp_path):
    base = build_architecture("fcos", num_classes=2, weights=None, detections_per_img=300)
    card = {"task": "boxes", "architecture": "fcos", "kwargs": {"detections_per_img": 300}, "classes": ["a", "b"]}
    save_checkpoint(tmp_path / "base.pt", base, card)
    model, _, kwargs, _ = initial_model(str(tmp_path / "base.pt"), "fcos", ["a", "b"], {"detections_per_img": 1000})
    assert kwargs["detections_per_img"] == 1000 and model.detections_per_img == 1000
    assert torch.equal(
        model.state_dict()["head.classification_head.cls_logits.weight"],
        base.state_dict()["head.classification_head.cls_logits.weight"],
    )
