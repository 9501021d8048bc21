"""Chula RBC-12: images ``Dataset/N.jpg``, labels ``Label/N.txt`` with one red cell a line: ``x y class``.

Convention: ``x y`` are the integer column and row of the cell's centre pixel, counted from 0 (the
published data hold x from 0 to 637 and y from 1 to 474 on 640x480 images, so they index pixels, not
1-based positions). cytolens puts the point at that pixel's centre: ``x + 0.5, y + 0.5``. Writing
takes the pixel that contains the point, ``floor(x), floor(y)`` (sub-pixel positions are lost).

``class`` is an integer 0..12 into :data:`CLASSES`; the class list is always those 13 names, in that
order. An empty label file is an image without labelled cells; an image without a label file is not
part of the dataset. Points only, all classified.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import DataError
from cytolens.io.atomic import write_text
from cytolens.io.images import IMAGE_SUFFIXES, image_size
from cytolens.io.licence import read_licence
from cytolens.io.point_checks import clip_points
from cytolens.io.registry import Capabilities
from cytolens.io.text import read_text
from cytolens.io.validation import ClassNames, check_number, text_number

CAPABILITIES = Capabilities(points=True)

CLASSES = [
    "normal cell", "macrocyte", "microcyte", "spherocyte", "target cell", "stomatocyte", "ovalocyte",
    "teardrop", "burr cell", "schistocyte", "uncategorised", "hypochromia", "elliptocyte",
]
"""The 13 Chula RBC-12 classes, in the order of their indices in the label files."""


def _image_for(label: Path, images: Path) -> Path:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (images / f"{label.stem}{suffix}", images / f"{label.stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    raise DataError(label, f"no image {label.stem}.jpg (or other image type) in {images}")


def _parse(label: Path) -> tuple[np.ndarray, np.ndarray]:
    """Pixel indices ``(M, 2)`` and class indices ``(M,)`` of one label file."""
    points, classes = [], []
    for number, line in enumerate(read_text(label, "label file").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise DataError(label, f"line {number}: expected 'x y class', got {line.strip()[:40]!r}")
        x, y = (check_number(text_number(field), f"line {number}: {name}", label, integer=True)
                for field, name in zip(fields[:2], "xy", strict=True))
        index = check_number(
            text_number(fields[2]), f"line {number}: class", label, low=0, high=len(CLASSES) - 1, integer=True
        )
        points.append([x, y])
        classes.append(index)
    return np.array(points, dtype=np.float64).reshape(-1, 2), np.array(classes, dtype=np.int64)


def _sort_key(path: Path) -> tuple[int, int | str]:
    """Numeric stems in numeric order, then the others by name."""
    return (0, int(path.stem)) if path.stem.isdigit() else (1, path.stem)


def read(path: Path, classes: list[str] | None = None) -> Dataset:
    """Read the Chula RBC-12 folder holding ``Dataset/`` and ``Label/``.

    Args:
        path: The dataset folder.
        classes: A class order to map the 13 Chula names into; a Chula class used in the labels but
            missing from it is an error. ``None`` keeps :data:`CLASSES`.

    Raises:
        DataError: If a folder, an image or a line is missing or malformed, or a class index is outside 0..12.

    """
    labels_folder, images_folder = path / "Label", path / "Dataset"
    if not labels_folder.is_dir():
        raise DataError(path, "not a Chula RBC-12 folder (no Label/ inside)")
    names = ClassNames(classes if classes is not None else CLASSES)
    images = []
    for label in sorted(labels_folder.glob("*.txt"), key=_sort_key):
        pixels, chula_classes = _parse(label)
        image_path = _image_for(label, images_folder)
        width, height = image_size(image_path)
        mapped = [names.index(CLASSES[index], label) for index in chula_classes]
        points = clip_points(pixels + 0.5, width, height, label)
        images.append(AnnotatedImage(image_path, width, height, label.stem, cells=Cells(centres=points, labels=mapped)))
    if not images:
        raise DataError(labels_folder, "no .txt label files")
    return Dataset(names.names, images, {}, path.name, read_licence(path))


def write(dataset: Dataset, out: Path) -> None:
    """Write ``out/Label/<image_id>.txt`` for every image.

    Images are not copied; they are expected in ``out/Dataset`` under the same stems.

    Raises:
        DataError: If a class of the dataset is not a Chula RBC-12 class.

    """
    for image in dataset.images:
        lines, cells = [], image.cells.point_cells()
        for (x, y), label in zip(np.floor(cells.centres).astype(int), cells.labels, strict=True):
            name = dataset.classes[label]
            if name not in CLASSES:
                raise DataError(out, f"class {name!r} (image {image.image_id}) is not a Chula RBC-12 class")
            lines.append(f"{x} {y} {CLASSES.index(name)}\n")
        write_text(out / "Label" / f"{image.image_id}.txt", "".join(lines))
