"""Ultralytics YOLO detection datasets: a ``data.yaml`` naming image folders, one label file per image.

Convention: a label line is ``class cx cy w h`` with the box centre and size divided by the image
width and height (0-1), measured from the top-left corner of the image: the cytolens origin, so
``x1 = (cx - w / 2) * W`` etc. and back. An optional sixth column is the score of a prediction.
Image sizes for the conversion come from the image headers.

``data.yaml`` keys: ``path`` (optional; the dataset root, relative to the yaml's folder; default the
yaml's folder), ``names`` (a list, or a ``{index: name}`` dict) and one key per split: ``train``,
``val`` and ``test`` must name existing images; any other key whose value names an existing folder or
file is read as a split too (Ultralytics ignores it). A split value is a folder of images (searched
recursively), an image list ``.txt`` (one path a line, relative to the list's folder), or a list of
either. An image's label file follows the Ultralytics rule: the last ``/images/`` of its path becomes
``/labels/`` and the suffix ``.txt``; a missing label file means an image without objects (a label
path that is a folder or a broken link is an error, as is an image that is a broken link). The
``image_id`` is the image's path inside its split folder without suffix (the stem for list entries);
an id in several splits must name one image (the same file, a link to it, or an identical copy).

Layout written by :func:`write`. Ultralytics finds an image's labels only through that path rule, so
image list files pointing at the original images would need label files beside the originals, inside
the source dataset. Instead each image is placed under ``images/`` by
:func:`~cytolens.io.paths.link_or_copy`: a hard link when ``out`` is on the image's file system (no
space used and, unlike a symbolic link, still valid when the source is moved or deleted), else a copy.
Every output is inside ``out``, and Ultralytics and :func:`read` both read the result as it is::

    out/data.yaml                          names, and <split>: images/<split>
    out/images/<split>/<image_id>.<ext>    hard link to (or copy of) the original image
    out/labels/<split>/<image_id>.txt

An image in several splits is placed in each. Images in no split go to the split folder ``all``;
when the dataset has no splits at all, ``train`` and ``val`` both name ``images/all`` (Ultralytics
needs both), so reading it back gives splits ``train`` and ``val`` holding every image.
"""

from __future__ import annotations

import filecmp
import os
from dataclasses import replace
from pathlib import Path, PurePosixPath

import numpy as np
import yaml

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import DataError
from cytolens.io.atomic import write_text
from cytolens.io.images import IMAGE_SUFFIXES, image_size
from cytolens.io.licence import read_licence
from cytolens.io.paths import link_or_copy
from cytolens.io.registry import Capabilities
from cytolens.io.text import read_text, read_yaml
from cytolens.io.validation import ClassNames, check_number, clean_boxes, text_number

CAPABILITIES = Capabilities(boxes=True, scores=True)

STANDARD_SPLITS = ("train", "val", "test")
NOT_SPLITS = frozenset({"path", "names", "nc", "download", "yaml_file", "channels", "kpt_shape", "flip_idx"})
"""``data.yaml`` keys that never name a split."""

UNSPLIT = "all"
"""Split folder of the images that belong to no split."""


def label_path(image: Path) -> Path:
    """The label file Ultralytics reads for ``image``: last ``/images/`` to ``/labels/``, suffix ``.txt``."""
    parts = list(image.parts)
    folders = [i for i, part in enumerate(parts[:-1]) if part == "images"]
    if folders:
        parts[folders[-1]] = "labels"
    return Path(*parts).with_suffix(".txt")


def _load_yaml(path: Path) -> dict:
    path = path / "data.yaml" if path.is_dir() else path
    spec = read_yaml(path, "YOLO data.yaml")
    if not isinstance(spec, dict) or "names" not in spec:
        raise DataError(path, "not a YOLO data.yaml (no 'names')")
    spec["yaml_file"] = path
    return spec


def _yolo_names(spec: dict) -> list[str]:
    """The class names in index order; a name YAML read as a number (``names: [1, 2]``) is taken as its text."""
    names = spec["names"]
    if isinstance(names, dict):
        try:
            order = sorted(int(key) for key in names)
        except (TypeError, ValueError):
            order = []
        if order != list(range(len(names))):
            raise DataError(spec["yaml_file"], "'names' keys must be the integers 0..N-1")
        names = [names[key] if key in names else names[str(key)] for key in order]
    if not isinstance(names, list):
        raise DataError(spec["yaml_file"], "'names' must be a list or an {index: name} mapping")
    return [str(name) if isinstance(name, int) and not isinstance(name, bool) else name for name in names]


def _split_images(entry: Path, source: Path, key: str) -> list[tuple[str, Path]]:
    """``(image_id, path)`` of the images a split entry names (folder, list file or image)."""
    if entry.is_dir():
        files = sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
        for file in files:
            if not file.is_file():
                raise DataError(file, f"image file not found (broken symbolic link to {os.readlink(file)})")
        return [(p.relative_to(entry).with_suffix("").as_posix(), p) for p in files]
    if entry.suffix.lower() == ".txt" and entry.is_file():
        lines = [line.strip() for line in read_text(entry, "image list").splitlines() if line.strip()]
        files = [Path(line) if Path(line).is_absolute() else entry.parent / line for line in lines]
        return [(p.stem, p) for p in files]
    if entry.suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
        return [(entry.stem, entry)]
    raise DataError(source, f"split {key!r}: {entry} is not an image folder, image list or image")


def _splits(spec: dict, root: Path) -> dict[str, list[tuple[str, Path]]]:
    """Split name to ``(image_id, path)`` of its images."""
    splits = {}
    for key, value in spec.items():
        values = value if isinstance(value, list) else [value]
        if key in NOT_SPLITS or value is None or not values or not all(isinstance(v, str) for v in values):
            continue
        entries = [Path(v) if Path(v).is_absolute() else root / v for v in values]
        if key not in STANDARD_SPLITS and not all(entry.exists() for entry in entries):
            continue  # some other setting, not a split
        splits[str(key)] = [item for entry in entries for item in _split_images(entry, spec["yaml_file"], key)]
    return splits


def _parse_labels(path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Normalised ``cx, cy, w, h`` rows, YOLO class indices and scores (``None`` without a sixth column)."""
    rows, classes, scores = [], [], []
    for number, line in enumerate(read_text(path, "label file").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (5, 6) or (scores and len(fields) == 5) or (rows and not scores and len(fields) == 6):
            raise DataError(path, f"line {number}: expected 'class cx cy w h' with the same optional score column")
        index = check_number(
            text_number(fields[0]), f"line {number}: class", path,
            low=0, high=n_classes - 1, integer=True,
        )
        values = [
            check_number(text_number(field), f"line {number}: {name}", path)
            for field, name in zip(fields[1:], ("cx", "cy", "w", "h", "score"), strict=False)
        ]
        rows.append(values[:4])
        classes.append(index)
        scores.extend(values[4:])
    has_scores = bool(scores)
    return np.array(rows).reshape(-1, 4), np.array(classes, dtype=np.int64), np.array(scores) if has_scores else None


def _same_image(first: Path, second: Path) -> bool:
    """Whether two image files are one image: the same file (or links to it), or identical copies."""
    return os.path.samefile(first, second) or filecmp.cmp(first, second, shallow=False)


def _read_image(image_id: str, path: Path, class_index: np.ndarray) -> AnnotatedImage:
    width, height = image_size(path)
    labels = label_path(path)
    if not labels.exists() and not labels.is_symlink():
        return AnnotatedImage(path, width, height, image_id)
    rows, yolo_classes, scores = _parse_labels(labels, len(class_index))
    cx, cy, w, h = rows.T * np.array([[width], [height], [width], [height]])
    boxes = np.column_stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    clipped, kept = clean_boxes(boxes, width, height, labels)
    cells = Cells(boxes=clipped, labels=class_index[yolo_classes], scores=scores).select(kept)
    return AnnotatedImage(path, width, height, image_id, cells=cells)


def read(path: Path, classes: list[str] | None = None) -> Dataset:
    """Read a YOLO dataset from its ``data.yaml`` (or the folder holding it).

    Raises:
        DataError: If the yaml, a split's images or a label line is missing or malformed, a class
            index is outside ``names``, or one image id names two different files.

    """
    spec = _load_yaml(path)
    yaml_file: Path = spec["yaml_file"]
    root = Path(str(spec.get("path") or "."))
    root = root if root.is_absolute() else yaml_file.parent / root
    names = ClassNames(classes)
    class_index = np.array(
        [names.index(name, yaml_file, f"names[{i}]") for i, name in enumerate(_yolo_names(spec))], dtype=np.int64
    )
    images: dict[str, AnnotatedImage] = {}
    splits = {}
    for split, members in _splits(spec, root).items():
        for image_id, image_path in members:
            if image_id not in images:
                images[image_id] = _read_image(image_id, image_path, class_index)
            elif not _same_image(images[image_id].path, image_path):
                first = images[image_id].path
                raise DataError(yaml_file, f"image id {image_id!r} names two different files: {first} and {image_path}")
        splits[split] = [image_id for image_id, _ in members]
    if not images:
        raise DataError(yaml_file, "names no images")
    unscored = [image for image in images.values() if image.cells.scores is None]
    if len(unscored) < len(images):
        with_cells = [image for image in unscored if len(image.cells)]
        if with_cells:
            raise DataError(label_path(with_cells[0].path), "has no score column while other label files do")
        for image in unscored:  # an image without boxes among scored ones is scored, with no scores
            images[image.image_id] = replace(image, cells=replace(image.cells, scores=np.zeros(0)))
    return Dataset(names.names, list(images.values()), splits, root.name, read_licence(root))


def _label_lines(image: AnnotatedImage) -> str:
    scale = np.array([image.width, image.height, image.width, image.height], dtype=np.float64)
    cells = image.cells.box_cells()
    x1, y1, x2, y2 = cells.boxes.T
    rows = np.column_stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]) / scale
    lines = []
    for i, (row, label) in enumerate(zip(rows, cells.labels, strict=True)):
        values = [*row, cells.scores[i]] if cells.scores is not None else list(row)
        lines.append(" ".join([str(int(label)), *(repr(float(value)) for value in values)]))
    return "".join(f"{line}\n" for line in lines)


def write(dataset: Dataset, out: Path) -> None:
    """Write ``out/data.yaml``, ``out/labels/<split>/`` and the images ``out/images/<split>/`` (see the module doc).

    Raises:
        DataError: If an image file is missing or can be neither linked nor copied.

    """
    members = {split: list(ids) for split, ids in dataset.splits.items()}
    in_split = {image_id for ids in members.values() for image_id in ids}
    unsplit = [image.image_id for image in dataset.images if image.image_id not in in_split]
    if unsplit:
        members[UNSPLIT] = unsplit
    by_id = {image.image_id: image for image in dataset.images}
    for split, ids in members.items():
        for image_id in ids:
            image = by_id.get(image_id)
            if image is None:
                continue
            link_or_copy(image.path, out / "images" / split / f"{image_id}{image.path.suffix}")
            write_text(out / "labels" / split / f"{image_id}.txt", _label_lines(image))
    order = sorted(members, key=lambda split: (STANDARD_SPLITS + (split,)).index(split))
    spec: dict = {split: PurePosixPath("images", split).as_posix() for split in order}
    if not dataset.splits:
        spec = {"train": spec[UNSPLIT], "val": spec[UNSPLIT]}
    spec["names"] = dict(enumerate(dataset.classes))
    write_text(out / "data.yaml", yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
