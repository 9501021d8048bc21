"""Exponential moving average of the weights, with the decay warmed up as in timm's ``ModelEmaV3``.

A plain EMA starts from the first weights and forgets them at ``decay`` per step: with a decay of
0.998, 16% of the average is still the near-random weights of step 1 after 900 steps, which is the
whole of a short CPU schedule. Warming the decay up, ``min(decay, (1 + n) / (10 + n))`` after ``n``
updates, lets the average follow the early weights closely and settle to ``decay`` later.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from lightning.pytorch.callbacks import WeightAveraging


def warm_ema(decay: float) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """An ``avg_fn`` for :class:`torch.optim.swa_utils.AveragedModel`: EMA with a warmed-up decay.

    Args:
        decay: The decay reached after many updates (0-1).

    Raises:
        ValueError: If ``decay`` is outside 0-1.

    Examples:
        >>> update = warm_ema(0.998)
        >>> round(float(update(torch.tensor(0.0), torch.tensor(1.0), torch.tensor(0))), 3)  # decay 0.1 at first
        0.9

    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must be in 0-1, got {decay}")

    @torch.no_grad()
    def update(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        n = float(num_averaged)
        step_decay = min(decay, (1 + n) / (10 + n))
        return step_decay * averaged + (1 - step_decay) * current

    return update


class WarmEMA(WeightAveraging):
    """Lightning callback: EMA of weights and buffers after every optimizer step, decay warmed up (:func:`warm_ema`).

    Validation and checkpoints use the averaged weights (Lightning's :class:`WeightAveraging` swaps them in).

    Args:
        decay: The final decay.

    """

    def __init__(self, decay: float) -> None:
        super().__init__(use_buffers=True, avg_fn=warm_ema(decay))
