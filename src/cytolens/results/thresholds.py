"""Score thresholds as people write and read them.

The filter itself is :meth:`cytolens.data.cells.Cells.scoring_at_least`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from cytolens.data.cells import ScoreThreshold


def describe(threshold: ScoreThreshold | None) -> str:
    """A threshold as people read it: ``0.5`` or ``RBC 0.45, WBC 0.6``."""
    if threshold is None:
        return "none"
    if isinstance(threshold, Mapping):
        return ", ".join(f"{name} {value:g}" for name, value in threshold.items())
    return f"{threshold:g}"


def _score(text: str, what: str) -> float:
    """``text`` as a score in [0, 1].

    Raises:
        ValueError: Naming ``what`` when it is not a number in [0, 1].

    """
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what}: {text.strip()!r} is not a number") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{what}: {text.strip()} is not between 0 and 1")
    return value


def parse_score_threshold(
    text: str, classes: Sequence[str], current: ScoreThreshold | None = None
) -> ScoreThreshold:
    """Parse a score threshold written as one number (``0.4``) or per class (``RBC=0.4,WBC=0.5``).

    Args:
        text: What the user wrote.
        classes: The model's class names.
        current: The threshold the model runs with; a class that ``text`` does not name keeps its value
            from it (0 when ``current`` is ``None``).

    Returns:
        One number, or one per class name (every class of ``classes``, in their order).

    Raises:
        ValueError: If a value is not a number in [0, 1], a part is not ``CLASS=SCORE``, or a name is not
            one of ``classes`` (the message lists them).

    Examples:
        >>> parse_score_threshold("RBC=0.4", ["WBC", "RBC"], {"WBC": 0.5, "RBC": 0.55})
        {'WBC': 0.5, 'RBC': 0.4}
        >>> parse_score_threshold("0.3", ["WBC", "RBC"])
        0.3

    """
    if "=" not in text:
        return _score(text, "score threshold")
    given: dict[str, float] = {}
    for part in filter(None, (part.strip() for part in text.split(","))):
        name, equals, value = part.partition("=")
        name = name.strip()
        if not equals or not name:
            raise ValueError(f"{part!r} must look like CLASS=SCORE (e.g. RBC=0.4,WBC=0.5)")
        if name not in classes:
            raise ValueError(f"{name!r} is not a class of the model (its classes: {', '.join(classes)})")
        given[name] = _score(value, name)
    if isinstance(current, Mapping):
        base = {name: float(current.get(name, 0.0)) for name in classes}
    else:
        base = dict.fromkeys(classes, 0.0 if current is None else float(current))
    return {**base, **given}
