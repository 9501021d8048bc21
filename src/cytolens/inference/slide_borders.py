"""Each cell of a slide once, from the cells of overlapping regions.

Every region keeps the cells whose centre lies in its core (the cores partition the slide) or within a margin
around it: its *candidates*, each marked *owned* when its centre lies in the core. The same cell seen by two
regions gives two candidates that nearly coincide (the regions see the same pixels there, with different
context): boxes overlapping by :data:`SAME_CELL_IOU` or more, or centres closer than the model's smallest
distance between two cells. Of such a pair the one that *wins* stays: an owned candidate over one that is not,
then the higher score, then the earlier region. A candidate stays when no candidate of another region that is
the same cell wins over it, and it is owned or seen by another region too: so a cell whose two views fall on
either side of a core border counts once (not twice, nor, when each view lands in the other's core, never), and a
cell only a neighbour saw, centred in a core whose own region did not find it, is left to that region.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree
from torchvision.ops import box_iou

from cytolens.data.cells import Cells

SAME_CELL_IOU = 0.5
"""Boxes of two regions overlapping by at least this IoU are one cell (they see the same pixels, so one cell's
boxes nearly coincide, and a detector's NMS keeps no two boxes of distinct cells that overlap this much)."""


@dataclass(frozen=True)
class Candidates:
    """A region's candidate cells (level-0 slide pixels), which its core owns, and the region's number."""

    cells: Cells
    owned: np.ndarray
    region: int


def same_cells(first: Cells, second: Cells, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Which cells of two regions are one cell (boxes by IoU, points by distance less than ``radius``), as index
    pairs ``(i, j)`` into ``first`` and ``second``. Points are paired through k-d trees, so that memory grows with the
    pairs (the cells in the regions' overlap), not with the product of the regions' cells.
    """
    if not len(first) or not len(second):
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    if first.boxes is not None and second.boxes is not None:
        return np.nonzero(box_iou(torch.tensor(first.boxes), torch.tensor(second.boxes)).numpy() >= SAME_CELL_IOU)
    near = cKDTree(first.centres).sparse_distance_matrix(cKDTree(second.centres), radius, output_type="ndarray")
    near = near[near["v"] < radius]
    return near["i"].astype(np.intp), near["j"].astype(np.intp)


def kept(mine: Candidates, others: Sequence[Candidates], radius: float) -> np.ndarray:
    """Which candidates of ``mine`` stay (see the module docstring), given the candidates of its neighbours.

    Args:
        mine: A region's candidates.
        others: Its neighbouring regions' candidates.
        radius: Two centres closer than this (level-0 pixels) are one cell (point models).

    Returns:
        ``(N,)`` bool over ``mine.cells``.

    """
    scores = mine.cells.scores
    matched = np.zeros(len(mine.cells), dtype=bool)
    beaten = np.zeros(len(mine.cells), dtype=bool)
    for other in others:
        ours, theirs = same_cells(mine.cells, other.cells, radius)
        if not len(ours):
            continue
        their_scores, our_scores = other.cells.scores[theirs], scores[ours]
        their_owned, our_owned = other.owned[theirs], mine.owned[ours]
        wins = (their_owned > our_owned) | (their_owned == our_owned) & (
            (their_scores > our_scores) | ((their_scores == our_scores) & (other.region < mine.region))
        )
        matched[ours] = True
        beaten[ours[wins]] = True
    return (mine.owned | matched) & ~beaten


__all__ = ["SAME_CELL_IOU", "Candidates", "kept", "same_cells"]
