"""Monte-Carlo dropout: several stochastic passes of a model over one image, dropout active in its heads only.

:meth:`Model.passes_iter <cytolens.inference.model.Model.passes_iter>` gives, per image, the plain prediction and
its :class:`Passes`: the cells of the plain (deterministic) pass first, then those of ``N - 1`` passes with the
heads' dropout on. Every pass goes through the same code as ordinary prediction (tiling, merging across tiles,
NMS, scale mapping, thresholds); two mechanisms here make the passes stochastic and cheap:

- :func:`stochastic_heads` turns on the dropout modules an architecture declares in its heads
  (``network.head_dropouts()``), at the card's rate or one given for the passes only (weights unchanged; a model
  trained without head dropout gets it at that rate, by default :data:`DEFAULT_RATE`), seeded so that the same
  seed gives the same passes. Every other module (batch norm included) stays in eval mode.
- :func:`shared_trunk` memoises the deterministic parts before the heads' dropout (``network.TRUNK``: a box
  model's backbone + FPN, and FCOS's head towers; everything before a point model's heads; a patch classifier's
  ``features``) by the content of their inputs: the plain pass computes them once per image, tile or batch of
  patch views, and passes 2..N run only what follows the dropout.

Examples:
    >>> model = cytolens.load_model("rbc-morphology")  # doctest: +SKIP
    >>> for result, passes in model.passes_iter("smear.jpg", passes=20, dropout=0.1):  # doctest: +SKIP
    ...     passes.probabilities.shape  # (20 passes, cells of result, 13 classes)

"""

from __future__ import annotations

import hashlib
import logging
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cytolens.data.cells import Cells
from cytolens.errors import ModelError
from cytolens.io.validation import check_number
from cytolens.progress import NOTE

log = logging.getLogger(__name__)

DEFAULT_RATE = 0.1
"""Dropout rate of the passes of a model trained without head dropout when none is given (every bundled model)."""


@dataclass(frozen=True)
class Passes:
    """A model's Monte-Carlo dropout passes over one image, in image pixels.

    Attributes:
        cells: ``N`` records: ``cells[0]`` the plain, deterministic prediction (the cells ``Model.predict`` gives),
            ``cells[1:]`` the stochastic passes (dropout on in the heads only), all at the same thresholds. For a
            pipeline, ``cells[1:]`` are its detector's passes (positions, detection scores, labels in the
            detector's classes).
        probabilities: ``(N, len(cells[0]), C)`` class probabilities of the cells of ``cells[0]`` from the patch
            classifier of a pipeline in each pass (``[0]`` the plain one); ``None`` for a model without a patch
            classifier.
        classes: The classes of ``cells[0]`` and of ``probabilities``.

    """

    cells: list[Cells]
    probabilities: np.ndarray | None
    classes: list[str]

    def __len__(self) -> int:
        return len(self.cells)


def head_dropouts(network: nn.Module, source: str) -> list[nn.Module]:
    """The dropout modules in a network's heads (its architecture's ``head_dropouts()``).

    Raises:
        ModelError: Naming ``source``, if the architecture declares none.

    """
    declared = getattr(network, "head_dropouts", None)
    modules = declared() if declared is not None else []
    if not modules:
        raise ModelError(f"{source}: its architecture has no dropout in its heads for Monte-Carlo passes")
    return modules


def pass_rate(network: nn.Module, source: str, given: float | None = None, fallback: float | None = None) -> float:
    """The dropout rate of a network's heads in Monte-Carlo passes: ``given``, else the network's own (its card's),
    else ``fallback``, else :data:`DEFAULT_RATE` (said once in a note: the model was trained without head dropout).

    Raises:
        ModelError: Naming ``source``, if the architecture has no head dropout.
        CytolensError: If ``given`` or ``fallback`` is not a number above 0 and below 1.

    """
    own = max(module.p for module in head_dropouts(network, source))
    for value in (given, fallback):
        if value is not None:
            check_number(value, "dropout", low=0, high=1, low_open=True, high_open=True)
    rate = given if given is not None else own or fallback
    if not rate:
        log.log(
            NOTE,
            "%s: its heads were trained without dropout: Monte-Carlo passes at dropout %g (--dropout to change)",
            source, DEFAULT_RATE,
        )  # fmt: skip
        rate = DEFAULT_RATE
    return float(rate)


@contextmanager
def stochastic_heads(network: nn.Module, rate: float, seed: int) -> Iterator[None]:
    """Within the block, the network's head dropout modules are in training mode at ``rate`` and torch's random
    generators are seeded with ``seed`` (and restored after); the rest of the network stays as it was (eval).
    """
    modules = head_dropouts(network, type(network).__name__)
    before = [(module.p, module.training) for module in modules]
    for module in modules:
        module.p = rate
        module.train()
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            yield
    finally:
        for module, (rate_before, training) in zip(modules, before, strict=True):
            module.p = rate_before
            module.train(training)


class _Fingerprints:
    """Keys of tensors' contents (shape, type, hash of the values), each live tensor object hashed once: a trunk's
    inputs may be the outputs of another part of the trunk (FCOS's towers read the pyramid), the same objects in
    every pass.
    """

    def __init__(self) -> None:
        self.known: dict[int, tuple[weakref.ref[torch.Tensor], tuple[Any, ...]]] = {}

    def __call__(self, tensor: torch.Tensor) -> tuple[Any, ...]:
        seen = self.known.get(id(tensor))
        if seen is None or seen[0]() is not tensor:  # not seen, or another tensor that had its id
            values = tensor.detach().cpu().contiguous().numpy().tobytes()
            key = tuple(tensor.shape), str(tensor.dtype), hashlib.blake2b(values, digest_size=16).digest()
            seen = weakref.ref(tensor), key
            self.known[id(tensor)] = seen
        return seen[1]


@contextmanager
def shared_trunk(network: nn.Module) -> Iterator[None]:
    """Within the block, the network's trunk (``network.TRUNK``: the attribute paths of the deterministic methods
    before its heads' dropout) runs once per distinct input: a repeated input gets the first call's outputs.

    The trunk's inputs are tensors (images, tiles, pyramid levels or patches); they are told apart by their content,
    so the passes over one image or tile share one trunk computation however the predictor re-creates its tensors.

    Raises:
        ModelError: If the architecture declares no trunk.

    """
    paths = getattr(network, "TRUNK", None)
    if not paths:
        raise ModelError(f"{type(network).__name__}: its architecture declares no trunk for Monte-Carlo passes")
    owners, fingerprint = [], _Fingerprints()
    for path in paths:
        *parents, name = path.split(".")
        owner = network
        for parent in parents:
            owner = getattr(owner, parent)
        setattr(owner, name, _memoised(getattr(owner, name), fingerprint))  # an instance attribute, before the method
        owners.append((owner, name))
    try:
        yield
    finally:
        for owner, name in owners:
            delattr(owner, name)


def _memoised(computed: Callable[..., Any], fingerprint: _Fingerprints) -> Callable[..., Any]:
    """``computed``, run once per distinct content of its tensor inputs."""
    memo: dict[tuple[Any, ...], Any] = {}

    def trunk(*inputs: torch.Tensor) -> Any:
        key = tuple(fingerprint(tensor) for tensor in inputs)
        if key not in memo:
            memo[key] = computed(*inputs)
        return memo[key]

    return trunk


__all__ = ["Passes", "head_dropouts", "pass_rate", "shared_trunk", "stochastic_heads"]
