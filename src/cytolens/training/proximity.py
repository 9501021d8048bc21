"""Training targets and losses of point detectors: the proximity map and the per-pixel class map.

A cell centre is a point ``(x, y)`` in cytolens coordinates (pixel ``(col, row)`` has its centre at
``(col + 0.5, row + 0.5)``). For each pixel, ``D`` is the exact Euclidean distance from the pixel's
centre to the nearest cell centre (a KD-tree query, so sub-pixel centres are exact). The proximity
target is

    ``(exp(a * (1 - D / d)) - 1) / (exp(a) - 1)`` for ``D <= d``, else ``0``,

which is 1 on a centre and falls to 0 at distance ``d``; larger ``a`` makes the peak sharper.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from cytolens.data.annotations import UNCLASSIFIED

IGNORE = -1
"""Class-target value of pixels that train no class (far from any centre, or nearest an unclassified one)."""


def nearest_centre(points: np.ndarray, shape: tuple[int, int], radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Distance from every pixel centre to the nearest point, and that point's index.

    Args:
        points: ``(N, 2)`` centres ``x, y``.
        shape: ``(H, W)`` of the maps.
        radius: Points farther than this (inclusive) are not looked for: distance ``inf`` and index ``N`` there.

    Returns:
        ``(H, W)`` float distances and ``(H, W)`` int indices.

    """
    height, width = shape
    rows, cols = np.mgrid[0:height, 0:width]
    centres = np.column_stack([cols.ravel() + 0.5, rows.ravel() + 0.5])
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not len(points):
        return np.full(shape, np.inf), np.full(shape, len(points))
    distance, index = cKDTree(points).query(centres, distance_upper_bound=np.nextafter(radius, np.inf))  # inclusive
    return distance.reshape(shape), index.reshape(shape)


Nearest = tuple[np.ndarray, np.ndarray]
"""A :func:`nearest_centre` result (distances and indices), to share one query between several targets."""


def proximity_map(
    points: np.ndarray, shape: tuple[int, int], d: float, a: float = 3.0, nearest: Nearest | None = None
) -> np.ndarray:
    """The proximity target of a set of cell centres.

    Args:
        points: ``(N, 2)`` centres ``x, y`` (cytolens coordinates; points outside the image still count).
        shape: ``(H, W)`` of the map.
        d: Distance (pixels) at which the proximity reaches 0.
        a: Sharpness of the peak.
        nearest: ``nearest_centre(points, shape, r)`` with ``r >= d``, if already computed.

    Returns:
        ``(H, W)`` float32 map in 0-1.

    Raises:
        ValueError: If ``d`` or ``a`` is not positive.

    """
    if d <= 0 or a <= 0:
        raise ValueError(f"proximity needs d > 0 and a > 0, got d={d}, a={a}")
    distance, _ = nearest_centre(points, shape, d) if nearest is None else nearest
    inside = distance <= d
    out = np.zeros(shape, dtype=np.float64)
    out[inside] = np.expm1(a * (1 - distance[inside] / d)) / np.expm1(a)
    return out.astype(np.float32)


def class_target(
    points: np.ndarray, labels: np.ndarray, shape: tuple[int, int], radius: float, nearest: Nearest | None = None
) -> np.ndarray:
    """The per-pixel class target: the class of the nearest centre when it is within ``radius``.

    Args:
        points: ``(N, 2)`` centres ``x, y``.
        labels: ``(N,)`` class indices; :data:`~cytolens.data.annotations.UNCLASSIFIED` for unclassified centres.
        shape: ``(H, W)`` of the map.
        radius: Largest distance (pixels, inclusive) from a centre at which a pixel takes its class.
        nearest: ``nearest_centre(points, shape, r)`` with ``r >= radius``, if already computed.

    Returns:
        ``(H, W)`` int64 map of class indices, :data:`IGNORE` where the nearest centre is farther than
        ``radius`` or unclassified.

    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    distance, index = nearest_centre(points, shape, radius) if nearest is None else nearest
    label = np.append(labels, UNCLASSIFIED)[index]  # index == len(points) where no centre is within reach
    return np.where((distance <= radius) & (label >= 0), label, IGNORE).astype(np.int64)


def proximity_loss(
    output: torch.Tensor, target: torch.Tensor, lam: float = 5.0, known: torch.Tensor | None = None
) -> torch.Tensor:
    """Weighted squared error ``mean((y + lam * mean(y)) * (o - y)^2)``, ``mean(y)`` taken per image.

    Args:
        output: ``(B, H, W)`` or ``(B, 1, H, W)`` predicted proximity ``o``.
        target: Target proximity ``y``, same shape.
        lam: Weight of the background term relative to the foreground.
        known: Optional 0/1 map, same shape: only pixels with 1 count (both means are then taken over
            them); see :func:`cytolens.data.partial_labels.known_pixels`. ``None``: every pixel counts.

    Returns:
        The scalar loss (averaged over pixels and images).

    """
    output, target = output.flatten(1), target.flatten(1)
    if known is None:
        weight = target + lam * target.mean(dim=1, keepdim=True)
        return (weight * (output - target) ** 2).mean()
    known = known.flatten(1).to(target.dtype)
    counts = known.sum(dim=1, keepdim=True).clamp(min=1)
    weight = (target + lam * (target * known).sum(dim=1, keepdim=True) / counts) * known
    return (weight * (output - target) ** 2).sum() / counts.sum()


def class_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over the pixels with a class target (``target >= 0``); 0 when there are none.

    Args:
        logits: ``(B, C, H, W)`` class logits.
        target: ``(B, H, W)`` class indices, :data:`IGNORE` for pixels that train no class.
        weight: Optional ``(C,)`` class weights.

    """
    if not (target != IGNORE).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE)
