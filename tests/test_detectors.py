import pytest
import torch

from cytolens.errors import ModelError
from cytolens.models.blocks import freeze_blocks
from cytolens.models.checkpoint import load_network, read_card, save_checkpoint
from cytolens.models.registry import architectures, build_architecture

DETECTORS = sorted(architectures("boxes"))


def test_two_detector_families_registered():
    assert {"fcos", "faster-rcnn"} <= set(DETECTORS)


@pytest.mark.parametrize("name", DETECTORS)
def test_build_forward_backward(name):
    torch.manual_seed(0)
    model = build_architecture(name, num_classes=3, weights=None, min_size=96, max_size=128)
    boxes = torch.tensor([[10.0, 12.0, 40.0, 44.0], [50.0, 20.0, 70.0, 40.0]])
    target = {"boxes": boxes, "labels": torch.tensor([1, 3])}
    model.train()
    losses = model([torch.rand(3, 96, 128)], [target])
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 96, 128), torch.rand(3, 80, 100)])
    assert len(out) == 2 and out[0]["boxes"].shape[1] == 4


@pytest.mark.parametrize("name", DETECTORS)
def test_blocks_in_order_and_freezing(name):
    model = build_architecture(name, num_classes=2, weights=None)
    names = [block for block, _ in model.blocks()]
    assert names[0] == "backbone.stem" and "neck" in names and names.index("neck") > names.index("backbone.stage0")
    frozen = freeze_blocks(model, names.index("neck"))
    assert frozen == names[: names.index("neck")]
    assert not any(p.requires_grad for p in model.backbone.body.parameters())
    assert all(p.requires_grad for p in model.backbone.fpn.parameters())
    with pytest.raises(ValueError, match="cannot freeze"):
        freeze_blocks(model, len(names) + 1)


def test_checkpoint_round_trip_is_plain_and_safe(tmp_path):
    model = build_architecture("fcos", num_classes=3, weights=None)
    meta = {"task": "boxes", "architecture": "fcos", "kwargs": {"backbone": "tf_efficientnet_lite0"},
            "classes": ["WBC", "RBC", "Platelets"], "thresholds": {"score": 0.3}}
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, meta, half=True)
    card, state = read_card(path)
    assert list(card.classes) == meta["classes"] and card.stored_half and card.thresholds.score == 0.3
    rebuilt, _ = load_network(path)
    original = model.state_dict()
    for key, value in rebuilt.state_dict().items():
        assert torch.allclose(value.float(), original[key].float(), atol=1e-2, rtol=1e-2)


def test_checkpoint_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a loadable checkpoint"):
        read_card(bad)
    with pytest.raises(ModelError, match="not found"):
        read_card(tmp_path / "missing.pt")
    model = build_architecture("fcos", num_classes=1, weights=None)
    with pytest.raises(ModelError, match="lacks"):
        save_checkpoint(tmp_path / "x.pt", model, {"task": "boxes"})
    with pytest.raises(ModelError, match="metadata recipe is not plain JSON-like data"):
        save_checkpoint(tmp_path / "x.pt", model, {"task": "boxes", "architecture": "fcos", "kwargs": {},
                                                   "classes": ["a"], "recipe": {"lr": object()}})
    assert not (tmp_path / "x.pt").exists()
