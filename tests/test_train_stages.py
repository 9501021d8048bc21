"""The input size of the current training stage: one object, moved by the stage schedule, read by data and modules."""

from __future__ import annotations

from types import SimpleNamespace

from cytolens.models.blocks import freeze_blocks
from cytolens.models.registry import build_architecture
from cytolens.training.detection_module import DetectionModule
from cytolens.training.stages import InputSize, Stage, StageSchedule, short_side

STAGES = [Stage(9, 1, max_size=256), Stage(0, 2), Stage(0, 1, max_size=320), Stage(0, 1)]


def test_the_size_of_each_epoch_is_that_of_the_latest_stage_giving_one() -> None:
    size = InputSize(STAGES, base=416)
    sides = []
    for epoch in range(7):  # epochs after the schedule stay in the last stage
        size.enter(epoch)
        sides.append(size.side)
    assert sides == [256, 256, 256, 320, 320, 320, 320] and size.final == 320
    size.enter(1)  # a resumed run entering a stage without a size takes the earlier stage's
    assert size.staged == 256
    unsized = InputSize([Stage(0, 1), Stage(0, 1, max_size=512)], base=416)
    assert (unsized.side, unsized.staged, unsized.final) == (416, None, 512)
    assert InputSize([], base=300).final == 300 and short_side(512) == 384


def test_the_schedule_moves_the_size_and_the_detector_follows_it_once_a_stage_sets_one() -> None:
    model = build_architecture("fcos", 3, weights=None, fpn_channels=32, head_convs=1, min_size=200, max_size=256)
    freeze_blocks(model, 0)  # as the stages ask: the schedule has nothing to freeze (and nothing to print)
    size = InputSize([Stage(0, 1), Stage(0, 1, max_size=320)], base=256)
    module = DetectionModule(model, size)
    schedule = StageSchedule(size.stages, size)
    seen = []
    for epoch in range(2):
        schedule.on_train_epoch_start(SimpleNamespace(current_epoch=epoch), module)
        module.on_train_epoch_start()
        seen.append((size.side, model.transform.max_size, model.transform.min_size))
    # until a stage sets a size, the detector keeps the one it was built with (min_size 200, not 3/4 of 256)
    assert seen == [(256, 256, (200,)), (320, 320, (240,))]
