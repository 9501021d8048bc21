"""Score thresholds as people read them (the filter itself: :meth:`cytolens.data.cells.Cells.scoring_at_least`)."""

from __future__ import annotations

from collections.abc import Mapping

from cytolens.data.cells import ScoreThreshold


def describe(threshold: ScoreThreshold | None) -> str:
    """A threshold as people read it: ``0.5`` or ``RBC 0.45, WBC 0.6``."""
    if threshold is None:
        return "none"
    if isinstance(threshold, Mapping):
        return ", ".join(f"{name} {value:g}" for name, value in threshold.items())
    return f"{threshold:g}"
