"""Square patches around cells: where they lie in an image, what they are labelled, and how they are cut out.

A :class:`Patch` is a square window of an image (centre and side, in the image's pixels) with the set of
types it holds. Patches come from

- **crop folders**: an image with image labels and no cells is one patch, the whole image;
- **points**: a square of a fixed side around each labelled centre;
- **boxes**: the box, squared (its longer side) and padded by a fraction of it;
- **touching cells** (``touching`` distance given): cells whose centres lie closer than that distance are
  grouped into clusters (:func:`touching_clusters`); a cluster of several cells gives one patch around its
  extent, labelled with the set of its types, a lone cell a single-label patch.

:func:`crop_patch` cuts a window out of the pixels and resamples it to the network's input size, optionally
seen through a :class:`View` (rotation about the centre, shift of the centre, horizontal flip): the
augmentations and test-time views of patch classifiers. Pixels outside the image are mirrored in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from cytolens.data.annotations import AnnotatedImage
from cytolens.data.cells import UNCLASSIFIED, Cells


@dataclass(frozen=True)
class Patch:
    """A square window of one image and the types it holds.

    Attributes:
        image: Index of the image in its dataset.
        centre: ``(x, y)`` of the window's centre, in the image's pixels.
        side: Side of the window in the image's pixels.
        labels: The class indices of the types in the window (one for a single cell).
        cells: How many labelled cells the window was made from (0: a whole crop image).

    """

    image: int
    centre: tuple[float, float]
    side: float
    labels: tuple[int, ...]
    cells: int = 1


@dataclass(frozen=True)
class View:
    """How a patch is seen: rotated by ``angle`` degrees about its centre, the centre moved by ``shift``
    pixels (of the image), and mirrored left-right when ``flip``.
    """

    angle: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    flip: bool = False


def crop_patch(
    pixels: np.ndarray, centre: tuple[float, float], side: float, size: int, view: View = View()
) -> np.ndarray:
    """The ``(size, size, 3)`` uint8 patch of ``side`` image pixels around ``centre``, seen through ``view``.

    One affine resampling (bilinear) does the crop, rotation, shift, flip and resizing; pixels outside the
    image are mirrored in (``cv2.BORDER_REFLECT_101``).
    """
    scale = size / side
    matrix = cv2.getRotationMatrix2D(
        (float(centre[0] + view.shift[0]), float(centre[1] + view.shift[1])), view.angle, scale
    )
    matrix[:, 2] += (size / 2 - centre[0] - view.shift[0], size / 2 - centre[1] - view.shift[1])
    patch = cv2.warpAffine(
        np.ascontiguousarray(pixels), matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    return patch[:, ::-1].copy() if view.flip else patch


def random_view(rng: np.random.Generator, max_angle: float, max_shift: float, flip: bool) -> View:
    """A random view: angle uniform in ``±max_angle`` degrees, shift uniform in ``±max_shift`` pixels per axis."""
    return View(
        float(rng.uniform(-max_angle, max_angle)) if max_angle else 0.0,
        tuple(float(v) for v in rng.uniform(-max_shift, max_shift, 2)) if max_shift else (0.0, 0.0),
        bool(flip and rng.random() < 0.5),
    )


def test_time_views(count: int, shift: float = 0.0) -> list[View]:
    """``count`` fixed views for test-time aggregation: the patch itself first, then the dihedral views (90°
    rotations, each also flipped), then, if more are asked and ``shift`` is set, the patch with its centre
    moved by ``±shift`` along each axis.

    Raises:
        ValueError: If ``count`` is below 1 or above what these views offer.

    """
    views = [View(angle, (0.0, 0.0), flip) for flip in (False, True) for angle in (0.0, 90.0, 180.0, 270.0)]
    views.sort(key=lambda v: (v.angle != 0, v.flip))  # identity, flip, then the rotations
    if shift:
        views += [View(0.0, (dx, dy)) for dx, dy in ((shift, 0), (-shift, 0), (0, shift), (0, -shift))]
    if not 1 <= count <= len(views):
        raise ValueError(f"test-time views must number 1 to {len(views)}, not {count}")
    return views[:count]


def touching_clusters(centres: np.ndarray, distance: float) -> np.ndarray:
    """Cluster index of each cell: cells whose centres lie at most ``distance`` apart share a cluster (and so,
    transitively, do chains of touching cells). Clusters are numbered from 0 in the order of their first cell.
    """
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    if len(centres) == 0:
        return np.zeros(0, dtype=np.int64)
    pairs = cKDTree(centres).query_pairs(distance, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(centres), len(centres)))
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))  # renumber by first appearance
    return order[labels]


def image_patches(
    index: int,
    image: AnnotatedImage,
    side: float | None = None,
    pad: float = 0.1,
    touching: float | None = None,
) -> list[Patch]:
    """The patches of one annotated image.

    Args:
        index: The image's index in its dataset.
        image: The image and its labelled cells (cells of unknown class are left out) or image labels.
        side: Side of the square around each point, in the image's pixels (``None``: cells need boxes).
        pad: Padding of a squared box, as a fraction of its side (each side gets half).
        touching: Group cells whose centres lie closer than this many pixels into one multi-label patch
            around the cluster's extent (``None``: every cell its own patch).

    Raises:
        ValueError: If a cell has no box and no ``side`` is given.

    """
    cells = image.cells.select(image.cells.labels != UNCLASSIFIED)
    if len(cells) == 0:
        if not image.image_labels or len(image.cells):
            return []
        whole = (image.width / 2, image.height / 2)
        return [Patch(index, whole, float(max(image.width, image.height)), tuple(sorted(set(image.image_labels))), 0)]
    sides = _cell_sides(cells, side, pad)
    centres = cells.centres
    clusters = touching_clusters(centres, touching) if touching else np.arange(len(cells))
    patches = []
    for cluster in range(int(clusters.max()) + 1):
        members = np.flatnonzero(clusters == cluster)
        low = (centres[members] - sides[members, None] / 2).min(axis=0)
        high = (centres[members] + sides[members, None] / 2).max(axis=0)
        centre = (float(low[0] + high[0]) / 2, float(low[1] + high[1]) / 2)
        labels = tuple(sorted({int(label) for label in cells.labels[members]}))
        patches.append(Patch(index, centre, float((high - low).max()), labels, len(members)))
    return patches


def _cell_sides(cells: Cells, side: float | None, pad: float) -> np.ndarray:
    """Each cell's window side: its squared, padded box, else ``side``."""
    sides = np.full(len(cells), np.nan if side is None else float(side))
    if cells.boxes is not None:
        boxes = cells.boxes
        boxed = ~np.isnan(boxes).any(axis=1)
        sides[boxed] = np.maximum(boxes[boxed, 2] - boxes[boxed, 0], boxes[boxed, 3] - boxes[boxed, 1]) * (1 + pad)
    if np.isnan(sides).any():
        raise ValueError("cells marked by a point need a patch side")
    return np.maximum(sides, 1.0)


def dataset_patches(
    images: Iterable[AnnotatedImage], side: float | None = None, pad: float = 0.1, touching: float | None = None
) -> list[Patch]:
    """The patches of every image, in order (see :func:`image_patches`)."""
    return [patch for index, image in enumerate(images) for patch in image_patches(index, image, side, pad, touching)]
