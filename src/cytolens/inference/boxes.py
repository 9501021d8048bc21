"""Running a box detector on images of any size, and refusing images it cannot see at all.

A box detector resizes every image to its input as torchvision's ``GeneralizedRCNNTransform`` does:
by ``min(min_size / shorter side, max_size / longer side)``. It finds cells at the size it learnt them in
its training fields; a larger image (a mosaic of fields, a scan) would be shrunk until its cells are too
small to find (one pass over a 1280 x 960 mosaic of four BCCD fields misses half of the white cells). So an
image larger than one tile (:class:`BoxTiling`) is cut into overlapping tiles of the size of a training
field (which the detector resizes to its input, as training resized the field), each detected on its own,
and the tiles' boxes are merged (:func:`merge_tiles`): a box cut by an interior tile edge gives way to the
same cell seen whole in a neighbouring tile, the pieces of a cell that no tile holds whole are joined, and a
cell found whole in two tiles counts once. An image no larger than one tile runs whole, as it always has.

:func:`check_fit` refuses what the detector cannot see at all: an image (or tile) a side of which would
vanish at the input (3 x 2,000 into 512 x 384: 0 x 512 pixels, which torch cannot resize), and an image
shrunk more than :data:`MAX_SHRINK` times (by a model without tiles: its cells would shrink below what it
learnt to find). Point models need no such check: they run on tiles at the image's own scale
(:func:`~cytolens.inference.peaks.predict_points`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from torch import nn

from cytolens.errors import CytolensError, DataError
from cytolens.inference.tiles import Span, tiles
from cytolens.metrics.box_matching import match_boxes
from cytolens.models.card import InputConfig

MAX_SHRINK = 4.0
"""Largest factor by which a box detector may shrink an image (or tile) to its input.

Box training resizes whole fields to the input (the bundled model: BCCD's 640 x 480 fields into its 640 x 480
input) and zooms in up to 1.4 times with its random crops; at 4 times smaller, cells are under a third of
the size the model learnt them at.
"""
OVERLAP_SHARE = 0.2
"""Default overlap of neighbouring tiles as a share of the tile's longer side (128 pixels for 640-pixel tiles)."""
CUT_MARGIN = 8.0
"""A box ending within this many pixels of an interior tile edge is taken as cut by it.

The box of a cell cut by a tile edge ends at the edge or up to about 6 pixels inside it (measured on the
bundled model's tiles of BCCD mosaics); a whole cell taken as cut still counts once, from the tile holding it.
"""
COVER = 0.5
"""Share of a cut box (within the pixels both tiles see) that a whole box of another tile must cover for the cut
box to give way to it.
"""

Detections = dict[str, np.ndarray]
"""A detector's boxes in one image: ``boxes`` (N, 4) xyxy, ``labels`` (N,) 0-based, ``scores`` (N,)."""


@dataclass(frozen=True)
class BoxTiling:
    """Tiles of ``long`` x ``short`` pixels laid like the image (landscape or portrait), ``overlap`` apart.

    Raises:
        CytolensError: If ``overlap`` is negative or not smaller than ``short``.

    """

    long: int
    short: int
    overlap: int

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < self.short:
            raise CytolensError(
                f"tile overlap {self.overlap} must be at least 0 and smaller than the tiles "
                f"({self.long}x{self.short} pixels)"
            )

    @classmethod
    def of(cls, network: nn.Module, config: InputConfig) -> BoxTiling | None:
        """How a box model tiles images: tiles of ``config.tile_size`` pixels (longer side) overlapping by
        ``config.overlap``, with the shape of the model's input.

        Box training resizes every field to the input (``config.size``) and records the longer side of its largest
        field as the tile size: a field of that size then runs whole and the detector resizes it as training did
        (a 640 x 480 field to a 384 x 288 input), and only larger images are tiled. Without a tile size (cards
        written before training recorded it), tiles are the input size; without either, the model does not
        tile. Without an overlap, it is :data:`OVERLAP_SHARE` of the tile.
        """
        long = config.tile_size or (None if config.size is None else max(config.size))
        if long is None:
            return None
        transform = getattr(network, "transform", None)
        if config.size is not None:
            aspect = min(config.size) / max(config.size)
        elif transform is not None and hasattr(transform, "max_size"):
            aspect = min(transform.min_size[-1], transform.max_size) / max(transform.min_size[-1], transform.max_size)
        else:
            aspect = 1.0
        overlap = round(long * OVERLAP_SHARE) if config.overlap is None else config.overlap
        return cls(long, round(long * aspect), overlap)

    def shape(self, width: int, height: int) -> tuple[int, int]:
        """``(rows, columns)`` of the tiles of a ``width`` x ``height`` image."""
        return (self.short, self.long) if width >= height else (self.long, self.short)

    def fits(self, width: int, height: int) -> bool:
        """Whether the image is no larger than one tile (it then runs whole)."""
        rows, columns = self.shape(width, height)
        return height <= rows and width <= columns

    def windows(self, width: int, height: int) -> list[tuple[Span, Span]]:
        """``(row span, column span)`` of each tile of the image: the whole image when it fits one tile, else
        tiles of the full tile size (so that the detector sees each at one scale) spread evenly.
        """
        if self.fits(width, height):
            return [(Span(0, height, 0, height), Span(0, width, 0, width))]
        return list(tiles(height, width, self.shape(width, height), self.overlap, shrink=False))


def check_fit(network: nn.Module, path: str | Path, width: int, height: int, tiling: BoxTiling | None = None) -> None:
    """Refuse an image that ``network`` (a torchvision detector) would shrink too much or to nothing.

    Args:
        network: The detector; one without a torchvision ``transform`` (min and max size) is not checked.
        path: The image, named in the error.
        width: Image width.
        height: Image height.
        tiling: How the model tiles images: then the tiles of an image larger than one are checked.

    Raises:
        DataError: If a side would become less than one pixel at the input, or the image (or its tiles) would
            be shrunk more than :data:`MAX_SHRINK` times.

    """
    transform = getattr(network, "transform", None)
    if transform is None or not hasattr(transform, "max_size"):
        return
    seen, tiles_seen = (width, height), None
    if tiling is not None and not tiling.fits(width, height):
        rows, columns = tiling.shape(width, height)
        seen = (min(columns, width), min(rows, height))
        tiles_seen = f"{seen[0]}x{seen[1]} tiles"
    scale = min(transform.min_size[-1] / min(seen), transform.max_size / max(seen))
    resized = (math.floor(seen[0] * scale), math.floor(seen[1] * scale))
    if min(resized) < 1:
        became = f"its {tiles_seen} would be" if tiles_seen else "it would be"
        raise DataError(
            path, f"{width}x{height} image is too thin for the model: {became} {resized[0]}x{resized[1]} pixels "
            "at its input"
        )
    if 1 / scale > MAX_SHRINK:
        what = f"{width}x{height} image's {tiles_seen}" if tiles_seen else f"{width}x{height} image"
        advice = "use smaller tiles" if tiles_seen else "crop or tile it"
        raise DataError(
            path, f"{what} would be shrunk {1 / scale:.0f} times to the model's input; cells would be missed — {advice}"
        )


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def _intersection(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``(N, M)`` areas shared by each box of ``first`` and each of ``second``."""
    low = np.maximum(first[:, None, :2], second[None, :, :2])
    high = np.minimum(first[:, None, 2:], second[None, :, 2:])
    return np.prod(np.clip(high - low, 0, None), axis=2)


def _cut(boxes: np.ndarray, rows: Span, cols: Span, width: int, height: int) -> np.ndarray:
    """Which boxes of a tile end at one of its interior edges (those inside the image, not on its border)."""
    cut = np.zeros(len(boxes), dtype=bool)
    for inside, side, edge, sign in (
        (cols.start > 0, 0, cols.start, 1),
        (rows.start > 0, 1, rows.start, 1),
        (cols.stop < width, 2, cols.stop, -1),
        (rows.stop < height, 3, rows.stop, -1),
    ):
        if inside:
            cut |= sign * (boxes[:, side] - edge) <= CUT_MARGIN
    return cut


def _in_window(boxes: np.ndarray, window: np.ndarray) -> np.ndarray:
    """``boxes`` cut to the ``window`` (``x0, y0, x1, y1``)."""
    return np.clip(boxes, np.tile(window[:2], 2), np.tile(window[2:], 2))


def _gives_way(
    boxes: np.ndarray, labels: np.ndarray, cut: np.ndarray, first: np.ndarray, second: np.ndarray, window: np.ndarray,
) -> np.ndarray:
    """Which boxes of ``first`` are cut by their tile and show part of a cell that a box of ``second`` (from another
    tile, not cut) holds whole: of the same class, covering :data:`COVER` of the cut box within the ``window`` both
    tiles see.
    """
    one, other = _in_window(boxes[first], window), _in_window(boxes[second], window)
    common = _intersection(one, other)
    covered = (common > 0) & (common >= COVER * _area(one)[:, None])
    return cut[first] & ((labels[first, None] == labels[None, second]) & covered & ~cut[None, second]).any(axis=1)


def _same_cells(
    boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray, first: np.ndarray, second: np.ndarray,
    window: np.ndarray, iou: float,
) -> np.ndarray:
    """``(2, K)`` pairs of boxes of ``first`` and of ``second`` (indices, from two tiles) that are one cell, each box
    in one pair at most: paired as :func:`~cytolens.metrics.box_matching.match_boxes` pairs predictions with true
    boxes (of one class, an IoU of at least ``iou``, the highest scores of ``first`` choosing first), within the
    ``window`` both tiles see.
    """
    one, other = _in_window(boxes[first], window), _in_window(boxes[second], window)
    seen, also_seen = _area(one) > 0, _area(other) > 0
    first, second = first[seen], second[also_seen]
    pairs = match_boxes(one[seen], labels[first], scores[first], other[also_seen], labels[second], iou)
    return np.stack([first[pairs[:, 0]], second[pairs[:, 1]]])


def _cells(links: np.ndarray, count: int) -> np.ndarray:
    """The cell of each of ``count`` boxes: boxes linked by ``links`` (``(2, K)`` index pairs), even through others,
    share one.
    """
    graph = csr_matrix((np.ones(links.shape[1]), (links[0], links[1])), shape=(count, count))
    return connected_components(graph, directed=False)[1]


def merge_tiles(
    parts: Sequence[Detections], windows: Sequence[tuple[Span, Span]], width: int, height: int, iou: float
) -> Detections:
    """One image's detections from those of its tiles (in image coordinates), each cell once.

    A box ending at an interior edge of its tile (within :data:`CUT_MARGIN`) is "cut": it may show part of a cell.
    Boxes of two overlapping tiles are compared only within the pixels both tiles see, where the tiles see the same
    thing: there one cell's two boxes nearly coincide (a box cut by a tile edge and the same cell seen whole, or two
    pieces of a cell larger than the overlap), however different they are elsewhere.

    1. A cut box showing part of a cell that another tile holds whole gives way to that tile's box
       (:func:`_gives_way`).
    2. Whole boxes are paired one to one across tiles, of one class and overlapping by an IoU of at least ``iou``
       (:func:`_same_cells`); of a cell whole in two tiles (or more), the highest-scoring box stays, as NMS would
       keep it.
    3. The cut boxes left (a cell larger than the overlap, that no tile holds whole) are paired so too, and the
       pieces of a cell become the box around them, with their highest score.

    Boxes of one tile are never compared (the detector's own NMS did that), nor boxes of different cells across
    tiles. One NMS over all the tiles' boxes dropped one of two neighbouring cells whose boxes overlapped a little
    more in one tile's view than in the other's; and joining any boxes that covered half of a piece joined
    low-scoring boxes over whole regions, piece by piece across tiles, into one box spanning the image.

    Args:
        parts: Each tile's detections, in image coordinates.
        windows: Each tile's ``(row span, column span)``.
        width: Image width.
        height: Image height.
        iou: The model's NMS IoU.

    Returns:
        The image's detections, highest score first.

    """
    boxes = np.concatenate([np.zeros((0, 4)), *(part["boxes"] for part in parts)])
    labels = np.concatenate([np.zeros(0, np.int64), *(part["labels"] for part in parts)])
    scores = np.concatenate([np.zeros(0), *(part["scores"] for part in parts)])
    members = np.split(np.arange(len(boxes)), np.cumsum([len(part["scores"]) for part in parts])[:-1])
    cut = np.zeros(len(boxes), dtype=bool)
    for inside, (rows, cols) in zip(members, windows, strict=True):
        cut[inside] = _cut(boxes[inside], rows, cols, width, height)
    extents = np.array([[cols.start, rows.start, cols.stop, rows.stop] for rows, cols in windows]).reshape(-1, 4)
    shared = np.concatenate([np.maximum(extents[:, None, :2], extents[None, :, :2]),
                             np.minimum(extents[:, None, 2:], extents[None, :, 2:])], axis=2)
    overlapping = (shared[..., :2] < shared[..., 2:]).all(axis=2)
    np.fill_diagonal(overlapping, False)
    pieces = cut.copy()
    for number, other in np.argwhere(overlapping):
        mine, theirs = members[number], members[other]
        pieces[mine[_gives_way(boxes, labels, cut, mine, theirs, shared[number, other])]] = False
    whole = ~cut
    links = [np.zeros((2, 0), np.int64)]
    for number, other in np.argwhere(np.triu(overlapping)):
        mine, theirs, window = members[number], members[other], shared[number, other]
        for kind in (whole, pieces):
            links.append(_same_cells(boxes, labels, scores, mine[kind[mine]], theirs[kind[theirs]], window, iou))
    cell = _cells(np.concatenate(links, axis=1), len(boxes))
    whole = np.flatnonzero(whole)
    order = np.lexsort((-scores[whole], cell[whole]))
    best = whole[order[np.unique(cell[whole][order], return_index=True)[1]]]  # per cell, its highest-scoring box
    cells, piece_cell = np.unique(cell[pieces], return_inverse=True)
    joined_boxes = np.tile([np.inf, np.inf, -np.inf, -np.inf], (len(cells), 1))
    np.minimum.at(joined_boxes, (piece_cell[:, None], [[0, 1]]), boxes[pieces, :2])
    np.maximum.at(joined_boxes, (piece_cell[:, None], [[2, 3]]), boxes[pieces, 2:])
    joined_scores = np.full(len(cells), -np.inf)
    np.maximum.at(joined_scores, piece_cell, scores[pieces])
    joined_labels = np.zeros(len(cells), np.int64)
    joined_labels[piece_cell] = labels[pieces]
    boxes = np.concatenate([boxes[best], joined_boxes])
    labels = np.concatenate([labels[best], joined_labels])
    scores = np.concatenate([scores[best], joined_scores])
    keep = np.argsort(-scores, kind="stable")
    return {"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]}


@torch.inference_mode()
def detect_boxes(
    detector: Callable[[list[torch.Tensor]], list[dict[str, torch.Tensor]]],
    images: Sequence[np.ndarray],
    device: torch.device,
    tiling: BoxTiling | None = None,
    iou: float = 0.6,
    per_pass: int | None = None,
) -> list[Detections]:
    """Detect boxes in RGB uint8 images, tiling those larger than one tile.

    The detector (a torchvision detection model in eval mode, or anything called like one, such as
    :class:`~cytolens.inference.onnx_boxes.OnnxFCOS`) resizes each image or tile internally to its input size
    and maps boxes back to its pixels; its score floor, NMS and cap (``detections_per_img``) apply per tile.

    Args:
        detector: The detector.
        images: ``(H, W, 3)`` uint8 RGB images.
        device: Where to run it.
        tiling: How images larger than one tile are cut (``None``: every image runs whole).
        iou: NMS IoU for merging the tiles of an image (see :func:`merge_tiles`).
        per_pass: Most images or tiles (of any of the images) per detector call (default: all).

    Returns:
        Per image, every detection the detector kept, before any score threshold of the model card (``boxes``
        in image pixels). Detections of the background column (label 0 inside torchvision's models; FCOS scores
        it like any class) are dropped.

    """
    windows = []
    for image in images:
        height, width = image.shape[:2]
        whole = (Span(0, height, 0, height), Span(0, width, 0, width))
        windows.append([whole] if tiling is None else tiling.windows(width, height))
    plan = [(index, rows, cols) for index, spans in enumerate(windows) for rows, cols in spans]
    per_pass = per_pass or len(plan)
    found: list[list[Detections]] = [[] for _ in images]
    for first in range(0, len(plan), per_pass):
        chunk = plan[first : first + per_pass]
        tensors = [
            torch.tensor(images[index][rows.start : rows.stop, cols.start : cols.stop], dtype=torch.float32,
                         device=device).permute(2, 0, 1).div_(255)
            for index, rows, cols in chunk
        ]
        for (index, rows, cols), out in zip(chunk, detector(tensors), strict=True):
            keep = out["labels"] > 0
            offset = np.array([cols.start, rows.start, cols.start, rows.start], dtype=np.float64)
            found[index].append({
                "boxes": out["boxes"][keep].cpu().numpy().astype(np.float64) + offset,
                "labels": out["labels"][keep].cpu().numpy().astype(np.int64) - 1,
                "scores": out["scores"][keep].cpu().numpy().astype(np.float64),
            })
    return [
        parts[0] if len(parts) == 1 else merge_tiles(parts, spans, image.shape[1], image.shape[0], iou)
        for image, parts, spans in zip(images, found, windows, strict=True)
    ]


def set_nms(network: nn.Module, iou: float) -> None:
    """Make a torchvision box detector's NMS drop a box overlapping a higher-scoring one by more than ``iou``.

    FCOS keeps the IoU on the model (``nms_thresh``), Faster R-CNN on its ROI heads; both read it when they
    post-process, so it changes without rebuilding the network (also when the network runs in ONNX Runtime:
    :class:`~cytolens.inference.onnx_boxes.OnnxFCOS` post-processes with the torch model).
    """
    getattr(network, "roi_heads", network).nms_thresh = iou
