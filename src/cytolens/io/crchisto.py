"""CRCHistoPhenotypes (Sirinukunwattana et al. 2016): H&E nuclei marked by their centres. Read-only.

Layout: a folder per image, ``imgN/``, holding the image ``imgN.png`` (BMP in some copies),
``imgN_detection.mat`` (every nucleus) and ``imgN_{epithelial,fibroblast,inflammatory,others}.mat``
(the classified subset). Each ``.mat`` holds the key ``detection``: float rows ``[x, y]``.

Convention: MATLAB's, 1-based with pixel ``(1, 1)``'s centre at ``(1, 1)``, so cytolens
``x = mx - 0.5``, ``y = my - 0.5``; the few points that then fall just outside the image are moved
onto its border (with a warning).

The detection file defines the nuclei. Each class file's points label the nearest nucleus within
:data:`MATCH_RADIUS` pixels; when two class points pick the same nucleus, the nearer one labels it.
Class points with no nucleus within the radius, or beaten by a nearer one, are dropped and reported
(one warning per image with the count, and a total); nuclei left unlabelled are unclassified.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import scipy.io
from scipy.spatial import cKDTree

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import DataError
from cytolens.io.images import IMAGE_SUFFIXES, image_size
from cytolens.io.point_checks import clip_points
from cytolens.io.registry import Capabilities
from cytolens.io.validation import ClassNames, check_finite

log = logging.getLogger(__name__)

CAPABILITIES = Capabilities(points=True, unclassified_points=True)

CLASSES = ["epithelial", "fibroblast", "inflammatory", "others"]
"""The classes, in the order of the class files."""

SPLITS = ("train", "validation")
"""Split folders of the dataset root."""

MATCH_RADIUS = 6.0
"""Largest distance in pixels between a class point and the nucleus it labels."""

LICENCE = "research use only; cite Sirinukunwattana et al., IEEE TMI 2016"


def _load_points(path: Path) -> np.ndarray:
    """The ``detection`` rows of a ``.mat`` file, converted to cytolens coordinates."""
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        content = scipy.io.loadmat(path)
    except (scipy.io.matlab.MatReadError, ValueError, OSError, TypeError, NotImplementedError) as error:
        raise DataError(path, f"cannot read MATLAB file ({error.__class__.__name__}: {error})") from None
    if "detection" not in content:
        raise DataError(path, "has no 'detection' variable")
    detection = np.asarray(content["detection"])
    if detection.size == 0:
        return np.zeros((0, 2))
    if detection.ndim != 2 or detection.shape[1] != 2:
        raise DataError(path, f"'detection' has shape {detection.shape}, expected (N, 2)")
    return check_finite(detection, "'detection' row", path) - 0.5


def _image_file(folder: Path) -> Path:
    for suffix in IMAGE_SUFFIXES:
        if (folder / f"{folder.name}{suffix}").is_file():
            return folder / f"{folder.name}{suffix}"
    raise DataError(folder, f"no image {folder.name}.png (or other image type)")


def _label_nuclei(nuclei: np.ndarray, class_points: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """Class index of each nucleus (:data:`UNCLASSIFIED` if none) and the number of class points dropped."""
    labels = np.full(len(nuclei), UNCLASSIFIED, dtype=np.int64)
    points = np.concatenate(class_points)
    point_classes = np.concatenate([np.full(len(p), k, dtype=np.int64) for k, p in enumerate(class_points)])
    if not len(points):
        return labels, 0
    if not len(nuclei):
        return labels, len(points)
    distance, nearest = cKDTree(nuclei).query(points, distance_upper_bound=MATCH_RADIUS)
    matched = np.flatnonzero(np.isfinite(distance))
    order = matched[np.argsort(-distance[matched], kind="stable")]  # farthest first: nearer ones overwrite
    labels[nearest[order]] = point_classes[order]
    return labels, len(points) - len(np.unique(nearest[matched]))


def _read_image(folder: Path, image_id: str, names: ClassNames) -> tuple[AnnotatedImage, int]:
    image_path = _image_file(folder)
    width, height = image_size(image_path)
    nuclei = _load_points(folder / f"{folder.name}_detection.mat")
    class_points = [_load_points(folder / f"{folder.name}_{name}.mat") for name in CLASSES]
    labels, dropped = _label_nuclei(nuclei, class_points)
    if dropped:
        log.warning("%s: %d class point(s) with no unclaimed nucleus within %g px: dropped", folder, dropped,
                    MATCH_RADIUS)
    mapping = [names.index(name, folder) for name in CLASSES]  # the classes in the order of the class files
    points = clip_points(nuclei, width, height, folder / f"{folder.name}_detection.mat")
    cells = Cells(centres=points, labels=labels).relabel(mapping, len(names.names))
    return AnnotatedImage(image_path, width, height, image_id, cells=cells), dropped


def _image_folders(folder: Path) -> list[Path]:
    folders = [p for p in folder.iterdir() if p.is_dir() and (p / f"{p.name}_detection.mat").is_file()]
    return sorted(folders, key=lambda p: (len(p.name), p.name))


def read(path: Path, classes: list[str] | None = None) -> Dataset:
    """Read the dataset root (with ``train/`` and ``validation/``) or one split folder of image folders.

    From the root, image ids are ``"<split>/imgN"`` and the splits are ``train`` and ``validation``;
    from a split folder, ids are ``"imgN"`` and there are no splits.

    Raises:
        DataError: If no image folder is found, or an image or ``.mat`` file is missing or malformed.

    """
    if not path.is_dir():
        raise DataError(path, "CRCHistoPhenotypes folder not found")
    names = ClassNames(classes if classes is not None else CLASSES)
    split_folders = [path / split for split in SPLITS if (path / split).is_dir()]
    parts = [(f"{folder.name}/", folder.name, folder) for folder in split_folders] or [("", "", path)]
    images, splits, total = [], {}, 0
    for prefix, split, folder in parts:
        members = []
        for image_folder in _image_folders(folder):
            image, dropped = _read_image(image_folder, prefix + image_folder.name, names)
            images.append(image)
            members.append(image.image_id)
            total += dropped
        if split:
            splits[split] = members
    if not images:
        raise DataError(path, "no image folders (imgN/ with imgN_detection.mat) found")
    if total:
        log.warning("%s: %d class point(s) dropped in total", path, total)
    return Dataset(names.names, images, splits, "crchisto", LICENCE)
