"""Assertions shared by the format tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset


def _named(labels: np.ndarray, classes: list[str]) -> list[str]:
    return [classes[label] if label != UNCLASSIFIED else "" for label in labels]


def _sorted_objects(
    coords: np.ndarray, labels: np.ndarray, scores: np.ndarray | None, classes: list[str]
) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """Objects in a canonical order (by class name, then coordinates), so writers may reorder them."""
    names = _named(labels, classes)
    order = sorted(range(len(names)), key=lambda i: (names[i], *np.round(coords[i], 4).tolist()))
    return coords[order], [names[i] for i in order], None if scores is None else scores[order]


def _assert_same_objects(
    what: str,
    image_id: str,
    a: tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]],
    b: tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]],
    atol: float,
    check_scores: bool,
) -> None:
    coords_a, names_a, scores_a = _sorted_objects(*a)
    coords_b, names_b, scores_b = _sorted_objects(*b)
    assert len(names_a) == len(names_b), f"{image_id}: {len(names_a)} {what} became {len(names_b)}"
    assert names_a == names_b, f"{image_id}: {what} classes differ"
    np.testing.assert_allclose(coords_b, coords_a, atol=atol, err_msg=f"{image_id}: {what} coordinates differ")
    if check_scores and names_a:  # no objects: no scores to compare (None and empty are the same)
        assert (scores_a is None) == (scores_b is None), f"{image_id}: {what} scores present in only one"
        if scores_a is not None:
            np.testing.assert_allclose(scores_b, scores_a, atol=atol, err_msg=f"{image_id}: {what} scores differ")


def assert_same_image(
    a: AnnotatedImage,
    b: AnnotatedImage,
    classes_a: list[str],
    classes_b: list[str],
    atol: float = 1e-6,
    check_scores: bool = True,
) -> None:
    """Assert two images hold the same annotations (compared by class name, in any object order).

    Args:
        a: The original image.
        b: The image read back.
        classes_a: Class names of ``a``'s dataset.
        classes_b: Class names of ``b``'s dataset.
        atol: Tolerance on coordinates and scores.
        check_scores: Also require the same scores (``None`` on both sides, or equal values).

    """
    assert a.image_id == b.image_id
    assert (a.width, a.height) == (b.width, b.height), f"{a.image_id}: size differs"
    for what, kind in (("boxes", "box_cells"), ("points", "point_cells")):
        cells_a, cells_b = getattr(a.cells, kind)(), getattr(b.cells, kind)()
        coords_a = cells_a.boxes if what == "boxes" else cells_a.centres
        coords_b = cells_b.boxes if what == "boxes" else cells_b.centres
        _assert_same_objects(
            what, a.image_id, (coords_a, cells_a.labels, cells_a.scores, classes_a),
            (coords_b, cells_b.labels, cells_b.scores, classes_b), atol, check_scores,
        )
    assert sorted(_named(np.asarray(a.image_labels, dtype=np.int64), classes_a)) == sorted(
        _named(np.asarray(b.image_labels, dtype=np.int64), classes_b)
    ), f"{a.image_id}: image labels differ"


def assert_same_annotations(
    a: Dataset, b: Dataset, atol: float = 1e-6, check_scores: bool = True, check_splits: bool = True
) -> None:
    """Assert dataset ``b`` (read back after a write) holds every annotation of ``a``.

    Images are matched by ``image_id``; objects by class name and coordinates, in any order; the
    class lists may be ordered differently (a format may renumber classes) but ``b`` must know every
    class ``a`` uses.

    Args:
        a: The original dataset.
        b: The dataset read back.
        atol: Tolerance on coordinates and scores.
        check_scores: Also compare scores.
        check_splits: Also compare the split lists (as sets of image ids per split).

    """
    ids_a = sorted(image.image_id for image in a.images)
    ids_b = sorted(image.image_id for image in b.images)
    assert ids_a == ids_b, f"image ids differ: only in a {sorted(set(ids_a) - set(ids_b))[:5]}, " \
        f"only in b {sorted(set(ids_b) - set(ids_a))[:5]}"
    by_id = {image.image_id: image for image in b.images}
    for image in a.images:
        assert_same_image(image, by_id[image.image_id], a.classes, b.classes, atol, check_scores)
    if check_splits:
        assert {k: sorted(v) for k, v in a.splits.items()} == {k: sorted(v) for k, v in b.splits.items()}


def write_image(path: Path, width: int = 64, height: int = 48) -> Path:
    """Write a small RGB image (a grey gradient) of the given size, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    row = np.linspace(0, 255, width, dtype=np.uint8)
    Image.fromarray(np.repeat(np.tile(row, (height, 1))[:, :, None], 3, axis=2)).save(path)
    return path
