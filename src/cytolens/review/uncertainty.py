"""When a proposed cell counts as uncertain: ``Uc <= alpha`` or ``Ud <= beta`` (issue 12's thresholds of ``R``).

A proposal without recorded uncertainties is not uncertain. The defaults equal :mod:`cytolens.metrics.uncertainty`'s
(a test checks it); they are repeated here so that ``cytolens --help`` does not import the metrics package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cytolens.store.rounds import StoredProposal

ALPHA = 0.8
"""Default: a proposal whose ``Uc`` is at most this is uncertain."""
BETA = 0.9
"""Default: a proposal whose ``Ud`` is at most this is uncertain."""


@dataclass(frozen=True)
class Uncertainty:
    """The thresholds below which (inclusive) a proposal counts as uncertain.

    Attributes:
        alpha: On the classification consistency ``Uc``.
        beta: On the detection consistency ``Ud``.

    """

    alpha: float = ALPHA
    beta: float = BETA

    def uncertain(self, proposal: StoredProposal) -> bool:
        """Whether ``proposal`` is uncertain (``Uc <= alpha`` or ``Ud <= beta``)."""
        values = proposal.uncertainties
        return values.get("Uc", 1.0) <= self.alpha or values.get("Ud", 1.0) <= self.beta
