"""Small numeric helpers shared by the metrics: ratios that tolerate a zero denominator, means over
defined values, and conversion of results to plain JSON values (NaN becomes ``None``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

import numpy as np


def ratio(numerator: Any, denominator: Any) -> Any:
    """``numerator / denominator``, NaN where the denominator is zero (scalars or arrays)."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out if out.ndim else float(out)


def f1_from_counts(tp: Any, fp: Any, fn: Any) -> Any:
    """F1 score ``2 TP / (2 TP + FP + FN)`` from counts; NaN when all three are zero."""
    return ratio(2 * np.asarray(tp), 2 * np.asarray(tp) + np.asarray(fp) + np.asarray(fn))


def mean_defined(values: Any) -> float:
    """Mean of the finite values, NaN when there are none (instead of numpy's warning)."""
    array = np.asarray(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    return float(finite.mean()) if finite.size else math.nan


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars and arrays made plain Python, paths made strings, NaN (or infinity) ``None``."""
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, PurePath):
        return str(value)
    return value


def is_figure(value: Any) -> bool:
    """Whether ``value`` is a single reported figure (a number or a missing one), not a table or a flag."""
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def concatenated(parts: Iterable[np.ndarray], dtype: type = np.int64) -> np.ndarray:
    """1-D arrays joined end to end; an empty array when there are none."""
    return np.concatenate([np.zeros(0, dtype=dtype), *parts]).astype(dtype)


def class_counts(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """How many of ``labels`` fall in each class ``0 .. n_classes - 1`` (negative labels are ignored)."""
    labels = np.asarray(labels, dtype=np.int64)
    return np.bincount(labels[labels >= 0], minlength=n_classes)
