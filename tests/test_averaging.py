"""The warmed-up EMA of weights."""

from __future__ import annotations

import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from cytolens.training.averaging import warm_ema


def test_decay_warms_up_then_holds():
    update = warm_ema(0.9)
    averaged = torch.tensor(0.0)
    # n = 0: decay 1/10; n = 1: 2/11; from n = 80 on: (81 / 90 = 0.9) the final decay
    assert float(update(averaged, torch.tensor(1.0), torch.tensor(0))) == pytest.approx(0.9)
    assert float(update(averaged, torch.tensor(1.0), torch.tensor(1))) == pytest.approx(1 - 2 / 11)
    assert float(update(averaged, torch.tensor(1.0), torch.tensor(500))) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="decay"):
        warm_ema(1.5)


def test_average_follows_a_short_run_closely():
    model = torch.nn.Linear(1, 1, bias=False)
    average = AveragedModel(model, avg_fn=warm_ema(0.998), use_buffers=True)
    for step in range(200):
        with torch.no_grad():
            model.weight.fill_(float(step))
        average.update_parameters(model)
    # weights 0, 1, ..., 199: a plain EMA at 0.998 ends at 35.0 (measured); the warmed-up one at 179
    assert float(average.module.weight.detach()) > 170
