"""What a lab notices on its first training run (issue 10): a folder without splits trains on all its images
(saying so in one line), Lightning's own messages stay off the screen, and validation mAP counts every box.
"""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
import yaml

from cytolens import examples
from cytolens.errors import CytolensError
from cytolens.models.checkpoint import read_card
from cytolens.models.registry import build_architecture
from cytolens.training.detection_module import DetectionModule
from cytolens.training.lightning_messages import lightning_at_debug
from cytolens.training.recipe import Recipe
from cytolens.training.stages import InputSize, Stage
from cytolens.training.train import train

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"fpn_channels": 32, "head_convs": 1, "min_size": 192, "max_size": 256}


def _recipe(data, **changes) -> Recipe:
    values = {
        "task": "boxes", "architecture": "fcos", "data": str(data), "kwargs": TINY, "stages": [Stage(0, 1)],
        "batch_size": 2, "ema_decay": 0.0, "init": "none",
    }
    return Recipe(**{**values, **changes})


def test_a_folder_without_splits_trains_on_all_its_images_saying_so_and_lightning_stays_quiet(tmp_path, capfd, caplog):
    caplog.set_level(logging.DEBUG, logger="cytolens")
    folder = examples.path()
    path = train(_recipe(folder, format="voc"), tmp_path / "run", max_steps=1, progress=False)

    card, _ = read_card(path)
    assert card.provenance.data["train"].images == 3 and card.provenance.data["train"].split is None
    assert card.provenance.data["val"] is None
    shown = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert shown == [
        f"{folder} names no splits: training on all its 3 images, without validation (to validate, give a dataset "
        "spec that names them, e.g. splits: {ratio: {train: 0.9, val: 0.1}}; see docs/formats.md)"
    ]
    debug = " ".join(record.getMessage() for record in caplog.records if record.levelno == logging.DEBUG)
    assert "GPU available" in debug and "litlogger" in debug
    out, err = capfd.readouterr()
    for noise in ("GPU available", "TPU available", "litlogger", "LeafSpec", "log_every_n_steps", "val_dataloader"):
        assert noise not in out + err


def test_data_that_names_other_splits_is_refused_naming_them(tmp_path, bccd):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"format": "voc", "root": str(bccd), "splits": {"lists": {"a": [], "b": []}}}))
    with pytest.raises(CytolensError, match=r"spec.yaml: unknown split 'train' \(known: a, b\)"):
        train(_recipe(spec), tmp_path / "run", max_steps=1, progress=False)


def test_lightning_records_and_warnings_go_to_debug_and_other_warnings_stay(caplog):
    from lightning.fabric.utilities.warnings import PossibleUserWarning
    from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

    caplog.set_level(logging.DEBUG, logger="cytolens")
    lightnings = logging.getLogger("lightning.pytorch")
    before = (list(lightnings.handlers), lightnings.propagate)
    with lightning_at_debug():
        rank_zero_info("GPU available: False, used: False")
        rank_zero_warn("the number of training batches is small", category=PossibleUserWarning)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, stacklevel=1)
        warnings.warn("the data cannot be normalised", UserWarning, stacklevel=1)
    shown = [(record.levelname, record.getMessage()) for record in caplog.records]
    expected = [
        ("DEBUG", "GPU available: False, used: False"),
        ("DEBUG", "the number of training batches is small"),  # Lightning's "possibly not an issue"
        ("DEBUG", "`isinstance(treespec, LeafSpec)` is deprecated"),
        ("WARNING", "the data cannot be normalised"),  # a real warning stays one
    ]
    pairs = zip(shown, expected, strict=True)
    assert all(level == want and message.endswith(text) for (level, message), (want, text) in pairs)
    assert (lightnings.handlers, lightnings.propagate) == before


@pytest.mark.parametrize("most", [300, 1000])
def test_validation_map_counts_as_many_boxes_as_the_detector_returns(most):
    model = build_architecture("fcos", 3, weights=None, detections_per_img=most, **TINY)
    module = DetectionModule(model, InputSize([], 256))
    assert module.val_map.max_detection_thresholds == [1, 100, most]
    boxes = torch.rand(most, 4) * 100
    boxes[:, 2:] += boxes[:, :2] + 1
    found = {"boxes": boxes, "scores": torch.rand(most), "labels": torch.zeros(most, dtype=torch.long)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "more than N detections" warning
        module.val_map.update([found], [{"boxes": boxes[:5], "labels": torch.zeros(5, dtype=torch.long)}])
