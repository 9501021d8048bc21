"""Decoding a proximity map into cell centres, and running a point detector on an image of any size.

Peaks are found as scikit-image's :func:`~skimage.feature.peak_local_max` finds them: pixels equal to
the maximum of their ``(2 * min_distance + 1)`` square neighbourhood, above
``max(threshold_abs, threshold_rel * max)``, kept greedily from the highest so that no two are closer
than ``min_distance`` (Chebyshev distance). Because that greedy pass never lets a lower peak remove a
higher one, the peaks above a higher threshold are exactly the peaks above a lower one filtered by
value; :func:`peak_candidates` plus :func:`above` use this both to tune ``threshold_rel`` cheaply and to
decode tiles against the maximum of the whole image.

A peak at pixel ``(row, col)`` is the centre ``(col + 0.5, row + 0.5)`` in cytolens coordinates.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.feature import peak_local_max
from torch import nn

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.inference.tiles import tiles
from cytolens.metrics.points import point_metrics
from cytolens.models.point_fcn import STRIDE
from cytolens.results.result import Result

DEFAULT_THRESHOLDS = {"threshold_rel": 0.4, "threshold_abs": 0.1, "min_distance": 6}
"""Decoding thresholds used when a checkpoint lacks some."""
THRESHOLD_GRID = tuple(np.round(np.arange(0.05, 0.71, 0.05), 2).tolist())
"""Candidate values of ``threshold_rel`` (``ξ``) that :func:`tune_threshold_rel` tries."""
TILE_OVERLAP = 64
"""Default overlap (pixels) of neighbouring tiles in :func:`predict_points`, when ``2 * min_distance`` is smaller."""


def peak_candidates(proximity: np.ndarray, min_distance: int, threshold_abs: float = 0.0) -> np.ndarray:
    """Local maxima above ``threshold_abs``, highest first, at least ``min_distance`` apart.

    Args:
        proximity: ``(H, W)`` proximity map.
        min_distance: Smallest distance (pixels, Chebyshev) between two peaks.
        threshold_abs: Peaks must exceed this value.

    Returns:
        ``(N, 2)`` int ``row, col`` indices.

    """
    return peak_local_max(
        np.asarray(proximity, dtype=np.float32), min_distance=min_distance, threshold_abs=threshold_abs,
        exclude_border=False,
    ).reshape(-1, 2)


def above(values: np.ndarray, image_max: float, threshold_rel: float, threshold_abs: float = 0.0) -> np.ndarray:
    """Which peak ``values`` pass ``max(threshold_abs, threshold_rel * image_max)`` (strictly, like scikit-image)."""
    return np.asarray(values) > max(threshold_abs, threshold_rel * image_max)


def tune_threshold_rel(
    candidates: list[tuple[AnnotatedImage, float]], truth: Dataset, radius: float, threshold_abs: float = 0.0
) -> tuple[float, dict[str, Any]]:
    """The ``ξ`` of :data:`THRESHOLD_GRID` with the best detection F1 (on a tie, the higher ``ξ``).

    Args:
        candidates: Per image (paired with ``truth`` by ``image_id``), the peaks found with ``ξ = 0``
            (scored by their proximity values) and the maximum of its proximity map.
        truth: The true centres.
        radius: Matching radius (pixels).
        threshold_abs: The absolute floor that applies with every ``ξ``.

    Returns:
        The chosen ``ξ`` and the :func:`~cytolens.metrics.points.point_metrics` figures at it.

    """
    figures = {}
    for xi in THRESHOLD_GRID:
        images = [
            replace(found, cells=found.cells.select(above(found.cells.scores, image_max, xi, threshold_abs)))
            for found, image_max in candidates
        ]
        figures[xi] = point_metrics(Dataset(truth.classes, images), truth, radius)
    best = max(figures, key=lambda xi: (figures[xi]["f1"] or 0.0, xi))
    return best, figures[best]


def to_xy(rows_cols: np.ndarray) -> np.ndarray:
    """``(N, 2)`` ``row, col`` pixel indices as cytolens ``x, y`` (pixel centres)."""
    return np.asarray(rows_cols, dtype=np.float64).reshape(-1, 2)[:, ::-1] + 0.5


def find_peaks(
    proximity: np.ndarray, threshold_rel: float, min_distance: int, threshold_abs: float = 0.0
) -> np.ndarray:
    """Cell centres in a proximity map.

    Args:
        proximity: ``(H, W)`` map.
        threshold_rel: Suppress values at or below ``threshold_rel`` times the map's maximum (``ξ``).
        min_distance: Smallest distance (pixels, Chebyshev) between two centres.
        threshold_abs: Also suppress values at or below this.

    Returns:
        ``(N, 2)`` centres ``x, y``, highest peak first.

    Examples:
        >>> prox = np.zeros((5, 6), dtype=np.float32)
        >>> prox[1, 4] = 1.0
        >>> find_peaks(prox, threshold_rel=0.5, min_distance=1)
        array([[4.5, 1.5]])

    """
    found = peak_candidates(proximity, min_distance, threshold_abs)
    if not len(found):
        return np.zeros((0, 2))
    keep = above(proximity[found[:, 0], found[:, 1]], float(np.max(proximity)), threshold_rel, threshold_abs)
    return to_xy(found[keep])


@torch.inference_mode()
def _run_tile(model: nn.Module, pixels: np.ndarray, device: torch.device | str) -> tuple[np.ndarray, torch.Tensor]:
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).to(device).permute(2, 0, 1)[None].float().div_(255)
    out = model(tensor)
    return out["proximity"][0, 0].float().cpu().numpy(), out["logits"][0].float().cpu()


def predict_points(
    model: nn.Module,
    image: np.ndarray,
    meta: dict[str, Any],
    tile_size: int = 768,
    overlap: int | None = None,
    device: torch.device | str = "cpu",
    path: str | Path = "",
    image_id: str = "",
    mpp: float | None = None,
) -> Result:
    """Find and classify the cells of an RGB image with a point model.

    The image is cut into overlapping tiles (one tile when it fits); each tile's proximity map is
    searched for peaks, and a peak is kept only from the tile whose core holds it, so a cell on a
    tile border is found once. Peaks are then thresholded against the maximum over the whole image,
    so the result equals decoding the stitched map, while memory stays bounded by one tile: a
    768-pixel tile of ``fcn-lite0`` needs about 0.5 GB besides the image, whatever the image size.

    Args:
        model: A point model (takes 0-1 RGB ``(B, 3, H, W)`` and normalises it itself; returns
            ``proximity`` and ``logits``), in eval mode.
        image: ``(H, W, 3)`` uint8 RGB.
        meta: Checkpoint metadata: ``classes`` and ``thresholds`` (``threshold_rel``, ``min_distance``,
            ``threshold_abs``; missing ones from :data:`DEFAULT_THRESHOLDS`).
        tile_size: Largest tile side (pixels); tiles are equal, evenly spread and a multiple of 32.
        overlap: Overlap of neighbouring tiles (pixels); at least ``2 * min_distance``. Default: the larger
            of :data:`TILE_OVERLAP` and ``2 * min_distance`` (so that a model with a large ``min_distance``
            still runs).
        device: Where to run the model.
        path: The image file, for the result.
        image_id: The image's key (default: the file stem).
        mpp: µm/px of the image, when known.

    Returns:
        One cell per peak: centre, class (argmax of the class probabilities at the centre), score
        (the proximity value there) and the class probabilities.

    Raises:
        ValueError: If ``overlap`` is smaller than ``2 * min_distance``, or not smaller than ``tile_size``.

    """
    thresholds = {**DEFAULT_THRESHOLDS, **meta.get("thresholds", {})}
    min_distance = int(thresholds["min_distance"])
    floor = float(thresholds["threshold_abs"])
    overlap = max(TILE_OVERLAP, 2 * min_distance) if overlap is None else overlap
    if overlap < 2 * min_distance:
        raise ValueError(f"tile overlap {overlap} must be at least 2 * min_distance ({2 * min_distance})")
    height, width = image.shape[:2]
    found_rc, values, probabilities = [], [], []
    image_max = 0.0
    for rows, cols in tiles(height, width, tile_size, overlap, multiple=STRIDE):
        proximity, logits = _run_tile(model, image[rows.start : rows.stop, cols.start : cols.stop], device)
        core = (slice(rows.core_start - rows.start, rows.core_stop - rows.start),
                slice(cols.core_start - cols.start, cols.core_stop - cols.start))
        image_max = max(image_max, float(proximity[core].max()))
        peaks = peak_candidates(proximity, min_distance, floor)
        inside = (
            (peaks[:, 0] >= core[0].start) & (peaks[:, 0] < core[0].stop)
            & (peaks[:, 1] >= core[1].start) & (peaks[:, 1] < core[1].stop)
        )
        peaks = peaks[inside]
        found_rc.append(peaks + [rows.start, cols.start])
        values.append(proximity[peaks[:, 0], peaks[:, 1]])
        probabilities.append(torch.softmax(logits[:, peaks[:, 0], peaks[:, 1]].T, dim=1).numpy())
    values, probabilities = np.concatenate(values), np.concatenate(probabilities).astype(np.float64)
    found = Cells(
        centres=to_xy(np.concatenate(found_rc)), labels=probabilities.argmax(axis=1), scores=values,
        probabilities=probabilities,
    )
    kept = np.flatnonzero(above(values, image_max, float(thresholds["threshold_rel"]), floor))
    kept = kept[np.argsort(-values[kept], kind="stable")]
    return Result(Path(path), width, height, image_id, mpp, cells=found.select(kept), classes=list(meta["classes"]))
