"""Class folders of image crops: ``root/<class>/<image>``, the folder name is the image's class.

Used by cell-crop datasets such as erythrocytesIDB (``circular``, ``elongated``, ``other``) and CRIC
(``NILM``, ``ASC-US``, ``ASC-H``, ``LSIL``, ``HSIL``, ``SCC``). Every image becomes an
:class:`~cytolens.data.annotations.AnnotatedImage` with ``image_labels=[class]`` and
``image_id = "<class>/<stem>"``; there are no coordinates, so no convention to convert. Classes are
the sorted folder names unless a class order is given. Hidden folders and non-image files are ignored.

Writing places each image (the format is nothing but images in folders) into the folder of each of
its image labels, as ``<last part of image_id><suffix>``, by :func:`~cytolens.io.paths.link_or_copy`:
a hard link when the file system allows, else a copy with its timestamps. Images without an image
label cannot be written and are skipped with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.errors import DataError
from cytolens.io.images import image_size, list_images
from cytolens.io.licence import read_licence
from cytolens.io.paths import link_or_copy
from cytolens.io.registry import Capabilities
from cytolens.io.validation import ClassNames

log = logging.getLogger(__name__)

CAPABILITIES = Capabilities(image_labels=True)


def read(path: Path, classes: list[str] | None = None) -> Dataset:
    """Read the class folders under ``path``.

    Args:
        path: The folder holding one sub-folder per class.
        classes: A fixed class order; a folder whose name is not in it is an error.

    Raises:
        DataError: If ``path`` holds no class folders, a folder is not a known class, or an image is unreadable.

    """
    if not path.is_dir():
        raise DataError(path, "class-folder dataset not found")
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(path, "holds no class folders")
    names = ClassNames(classes if classes is not None else [p.name for p in folders])
    images = []
    for folder in folders:
        label = names.index(folder.name, folder)
        for image_path in list_images(folder):
            width, height = image_size(image_path)
            images.append(
                AnnotatedImage(image_path, width, height, f"{folder.name}/{image_path.stem}", image_labels=[label])
            )
    return Dataset(names.names, images, {}, path.name, read_licence(path))


def write(dataset: Dataset, out: Path) -> None:
    """Place every image in ``out/<class>/`` for each of its image labels (hard link, else copy).

    Raises:
        DataError: If an image file is missing, a class name cannot be a folder name, or two images would
            get the same file name in a folder.

    """
    for name in dataset.classes:
        if name in (".", "..") or "/" in name or "\\" in name:
            raise DataError(out, f"class name {name!r} cannot be a folder name")
    written: dict[Path, AnnotatedImage] = {}
    unlabelled = 0
    for image in dataset.images:
        unlabelled += not image.image_labels
        for label in image.image_labels:
            target = out / dataset.classes[label] / f"{image.image_id.rsplit('/', 1)[-1]}{image.path.suffix}"
            if target in written:
                raise DataError(target, f"images {written[target].image_id!r} and {image.image_id!r} share this name")
            link_or_copy(image.path, target)
            written[target] = image
    for name in dataset.classes:
        (out / name).mkdir(parents=True, exist_ok=True)
    if unlabelled:
        log.warning("%d image(s) without an image label cannot go into a class folder: skipped", unlabelled)
