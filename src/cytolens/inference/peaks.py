"""Decoding a proximity map into cell centres, and running a point detector on batches of images of any size.

Peaks are found as scikit-image's :func:`~skimage.feature.peak_local_max` finds them: pixels equal to
the maximum of their ``(2 * min_distance + 1)`` square neighbourhood, above
``max(threshold_abs, threshold_rel * max)``, kept greedily from the highest so that no two are closer
than ``min_distance`` (Chebyshev distance). Because that greedy pass never lets a lower peak remove a
higher one, the peaks above a higher threshold are exactly the peaks above a lower one filtered by
value; :func:`peak_candidates` plus :func:`above` use this both to tune ``threshold_rel`` cheaply and to
decode tiles against the maximum of the whole image.

A peak at pixel ``(row, col)`` is the centre ``(col + 0.5, row + 0.5)`` in cytolens coordinates.

With ``flips``, each tile also goes through the network mirrored left-right, top-bottom and both; the maps are
mirrored back and averaged (test-time augmentation), in the same forward pass as the tile itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.feature import peak_local_max
from torch import nn

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import CytolensError
from cytolens.inference.tiles import Span, tiles
from cytolens.metrics.points import point_metrics
from cytolens.models.card import PointThresholds
from cytolens.models.point_fcn import STRIDE
from cytolens.results.result import Result

DEFAULT_THRESHOLDS = {
    name: getattr(PointThresholds(), name) for name in ("threshold_rel", "threshold_abs", "min_distance")
}
"""Transitional, for training.point_module: the defaults of :class:`~cytolens.models.card.PointThresholds`."""
DEFAULT_TILE = 768
"""Default largest tile side (pixels) of :func:`predict_points`, when the model card gives none."""
THRESHOLD_GRID = tuple(np.round(np.arange(0.05, 0.71, 0.05), 2).tolist())
"""Candidate values of ``threshold_rel`` (``ξ``) that :func:`tune_threshold_rel` tries."""
ABSOLUTE_GRID = tuple(np.round(np.arange(0.05, 0.71, 0.025), 3).tolist())
"""Candidate values of ``threshold_abs`` that :func:`tune_threshold_abs` tries (with ``threshold_rel`` 0)."""
FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))
"""The test-time views of ``flips``: the tile, mirrored left-right, top-bottom, and both (axes of ``(B, C, H, W)``)."""
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


def tune_threshold_abs(
    candidates: list[tuple[AnnotatedImage, float]], truth: Dataset, radius: float
) -> tuple[float, dict[str, Any]]:
    """The ``threshold_abs`` of :data:`ABSOLUTE_GRID` with the best detection F1 when ``ξ`` is 0 (on a tie, the
    higher); the absolute counterpart of :func:`tune_threshold_rel`, with the same ``candidates``.

    Returns:
        The chosen ``threshold_abs`` and the :func:`~cytolens.metrics.points.point_metrics` figures at it.

    """
    figures = {}
    for floor in ABSOLUTE_GRID:
        images = [replace(found, cells=found.cells.select(found.cells.scores > floor)) for found, _ in candidates]
        figures[floor] = point_metrics(Dataset(truth.classes, images), truth, radius)
    best = max(figures, key=lambda floor: (figures[floor]["f1"] or 0.0, floor))
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


@dataclass(frozen=True)
class TileOutput:
    """A point model's outputs on one tile of one image of a batch.

    Attributes:
        image: The image's index in the batch.
        tile: The tile's index among its image's tiles (row by row).
        rows: The tile's rows (and its core's) in the image.
        cols: Its columns (and its core's).
        proximity: ``(h, w)`` proximity map of the tile.
        logits: ``(C, h, w)`` class logits of the tile.

    """

    image: int
    tile: int
    rows: Span
    cols: Span
    proximity: np.ndarray
    logits: torch.Tensor

    @property
    def core(self) -> tuple[slice, slice]:
        """The tile's core, in the tile's own pixel indices."""
        return (
            slice(self.rows.core_start - self.rows.start, self.rows.core_stop - self.rows.start),
            slice(self.cols.core_start - self.cols.start, self.cols.core_stop - self.cols.start),
        )


def tile_overlap(thresholds: PointThresholds, tile_size: int, overlap: int | None = None) -> int:
    """The overlap of neighbouring tiles: ``overlap``, by default the larger of :data:`TILE_OVERLAP` and
    ``2 * min_distance`` (so that a model with a large ``min_distance`` still runs).

    Raises:
        CytolensError: If ``overlap`` is smaller than ``2 * min_distance`` (a peak near a core border could not
            be told from its neighbour in the next tile), or not smaller than ``tile_size``.

    """
    least = 2 * thresholds.min_distance
    if overlap is not None and overlap < least:
        raise CytolensError(f"tile overlap {overlap} must be at least 2 * min_distance ({least}) of the model")
    overlap = max(TILE_OVERLAP, least) if overlap is None else overlap
    if overlap >= tile_size:
        raise CytolensError(f"tile overlap {overlap} must be smaller than the tile size {tile_size}")
    return overlap


@torch.inference_mode()
def tile_outputs(
    network: nn.Module,
    images: Sequence[np.ndarray],
    tile_size: int,
    overlap: int,
    device: torch.device | str = "cpu",
    per_pass: int = 1,
    flips: bool = False,
) -> Iterator[TileOutput]:
    """Run a point model on every tile of a batch of images, tiles of the same size (from any image) going
    through the network together, at most ``per_pass`` at a time.

    A tile's outputs do not depend on the other tiles of its pass, so the outputs are the same whatever
    ``per_pass`` is; memory grows with it (about 0.5 GB per 768-pixel tile of ``fcn-lite0``).

    Args:
        network: A point model (takes 0-1 RGB ``(B, 3, H, W)`` and normalises it itself; returns
            ``proximity`` and ``logits``), in eval mode.
        images: ``(H, W, 3)`` uint8 RGB images.
        tile_size: Largest tile side (pixels); tiles are equal, evenly spread and a multiple of
            :data:`~cytolens.models.point_fcn.STRIDE`.
        overlap: Overlap of neighbouring tiles (pixels); smaller than ``tile_size`` (see :func:`tile_overlap`).
        device: Where to run the network.
        per_pass: Most tiles per forward pass (with ``flips``, each tile's 4 views go together).
        flips: Average each tile's maps over its :data:`FLIPS` views.

    Yields:
        One :class:`TileOutput` per tile, grouped by tile size (in the order sizes first occur).

    """
    shapes: dict[tuple[int, int], list[tuple[int, int, Span, Span]]] = defaultdict(list)
    for index, image in enumerate(images):
        height, width = image.shape[:2]
        for number, (rows, cols) in enumerate(tiles(height, width, tile_size, overlap, multiple=STRIDE)):
            shapes[rows.stop - rows.start, cols.stop - cols.start].append((index, number, rows, cols))
    for planned in shapes.values():
        for first in range(0, len(planned), per_pass):
            chunk = planned[first : first + per_pass]
            pixels = np.stack([images[index][rows.start : rows.stop, cols.start : cols.stop]
                               for index, _, rows, cols in chunk])
            tensor = torch.from_numpy(pixels).to(device).permute(0, 3, 1, 2).float().div_(255)
            out = _flipped_outputs(network, tensor) if flips else network(tensor)
            proximity = out["proximity"][:, 0].float().cpu().numpy()
            logits = out["logits"].float().cpu()
            for position, (index, number, rows, cols) in enumerate(chunk):
                yield TileOutput(index, number, rows, cols, proximity[position], logits[position])


def _flipped_outputs(network: nn.Module, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """The network's ``proximity`` and ``logits`` on ``(B, 3, H, W)`` tiles, averaged over their :data:`FLIPS` views
    (one forward pass of ``4 * B`` tiles).
    """
    out = network(torch.cat([tensor.flip(axes) for axes in FLIPS]))
    return {
        name: torch.stack([views.flip(axes) for views, axes in zip(out[name].chunk(len(FLIPS)), FLIPS, strict=True)])
        .mean(dim=0)
        for name in ("proximity", "logits")
    }


def point_maps(
    network: nn.Module,
    images: Sequence[np.ndarray],
    tile_size: int,
    overlap: int,
    device: torch.device | str = "cpu",
    per_pass: int = 1,
    flips: bool = False,
) -> list[dict[str, np.ndarray]]:
    """A point model's outputs over whole images: each tile's core stitched into place (see :func:`tile_outputs`).

    Returns:
        Per image: ``proximity`` ``(H, W)`` float32 and class ``logits`` ``(C, H, W)`` float32.

    """
    maps: list[dict[str, np.ndarray]] = [{} for _ in images]
    for out in tile_outputs(network, images, tile_size, overlap, device, per_pass, flips):
        height, width = images[out.image].shape[:2]
        into = maps[out.image]
        if not into:
            into["proximity"] = np.zeros((height, width), np.float32)
            into["logits"] = np.zeros((len(out.logits), height, width), np.float32)
        place = (slice(out.rows.core_start, out.rows.core_stop), slice(out.cols.core_start, out.cols.core_stop))
        into["proximity"][place] = out.proximity[out.core]
        into["logits"][(slice(None), *place)] = out.logits[(slice(None), *out.core)].numpy()
    return maps


def predict_points(
    network: nn.Module,
    images: Sequence[np.ndarray],
    classes: Sequence[str],
    thresholds: PointThresholds,
    *,
    tile_size: int = DEFAULT_TILE,
    overlap: int | None = None,
    device: torch.device | str = "cpu",
    per_pass: int = 1,
    paths: Sequence[str | Path] | None = None,
    ids: Sequence[str] | None = None,
    flips: bool = False,
) -> list[Result]:
    """Find and classify the cells of RGB images with a point model.

    Each image is cut into overlapping tiles (one tile when it fits), and the tiles of all images run
    through the network ``per_pass`` at a time (see :func:`tile_outputs`). Each tile's proximity map is
    searched for peaks, and a peak is kept only from the tile whose core holds it, so a cell on a tile
    border is found once. Peaks are then thresholded against the maximum over the whole image, so the
    result equals decoding the stitched map, while memory stays bounded by ``per_pass`` tiles: a
    768-pixel tile of ``fcn-lite0`` needs about 0.5 GB besides the image, whatever the image size.

    Args:
        network: A point model (see :func:`tile_outputs`), in eval mode.
        images: ``(H, W, 3)`` uint8 RGB images.
        classes: The model's class names.
        thresholds: How peaks become cells (``threshold_rel``, ``threshold_abs``, ``min_distance``).
        tile_size: Largest tile side (pixels).
        overlap: Overlap of neighbouring tiles (pixels), see :func:`tile_overlap`.
        device: Where to run the network.
        per_pass: Most tiles per forward pass.
        paths: Each image's file, for its result (default: none).
        ids: Each image's key (default: its file stem).
        flips: Average each tile's maps over its mirrored views (see :data:`FLIPS`).

    Returns:
        Per image, a result carrying its pixels, with one cell per peak: centre, class (argmax of the
        class probabilities at the centre), score (the proximity value there) and the class probabilities;
        highest score first.

    Raises:
        CytolensError: If ``overlap`` is smaller than ``2 * min_distance`` or not smaller than ``tile_size``.

    """
    overlap = tile_overlap(thresholds, tile_size, overlap)
    found: list[dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, float]]] = [{} for _ in images]
    for out in tile_outputs(network, images, tile_size, overlap, device, per_pass, flips):
        proximity, core = out.proximity, out.core
        peaks = peak_candidates(proximity, thresholds.min_distance, thresholds.threshold_abs)
        inside = (
            (peaks[:, 0] >= core[0].start) & (peaks[:, 0] < core[0].stop)
            & (peaks[:, 1] >= core[1].start) & (peaks[:, 1] < core[1].stop)
        )
        peaks = peaks[inside]
        found[out.image][out.tile] = (
            peaks + [out.rows.start, out.cols.start],
            proximity[peaks[:, 0], peaks[:, 1]],
            torch.softmax(out.logits[:, peaks[:, 0], peaks[:, 1]].T, dim=1).numpy(),
            float(proximity[core].max()),
        )
    results = []
    for index, (image, per_tile) in enumerate(zip(images, found, strict=True)):
        rows_cols, values, probabilities, maxima = zip(*(per_tile[tile] for tile in sorted(per_tile)), strict=True)
        values, probabilities = np.concatenate(values), np.concatenate(probabilities).astype(np.float64)
        cells = Cells(
            centres=to_xy(np.concatenate(rows_cols)), labels=probabilities.argmax(axis=1), scores=values,
            probabilities=probabilities,
        )
        kept = np.flatnonzero(above(values, max(0.0, *maxima), thresholds.threshold_rel, thresholds.threshold_abs))
        kept = kept[np.argsort(-values[kept], kind="stable")]
        path = Path(paths[index]) if paths is not None else Path()
        height, width = image.shape[:2]
        results.append(
            Result(path, width, height, "" if ids is None else ids[index], cells=cells.select(kept),
                   classes=list(classes), pixels=image)
        )
    return results
