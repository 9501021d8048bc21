"""The experts' labels of a store as a cytolens :class:`~cytolens.data.annotations.Dataset`, for training and export.

A store used as a data source (``cytolens export --store``, ``cytolens train --data``) is opened with
:func:`open_source`, which never creates one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import UNCLASSIFIED, Cells
from cytolens.errors import DataError
from cytolens.io.validation import ClassNames
from cytolens.store.database import Store, open_store
from cytolens.store.schema import Image, ImageLabels, Label

SQLITE_HEADER = b"SQLite format 3\x00"
"""The first bytes of every SQLite database file."""


def is_store(location: str | Path) -> bool:
    """Whether ``location`` names a store rather than a dataset: a database URL (``scheme://...``) or a SQLite file."""
    if "://" in str(location):
        return True
    path = Path(location)
    if not path.is_file():
        return False
    with path.open("rb") as file:
        return file.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def open_source(location: str | Path, root: str | Path) -> Store:
    """Open an existing store to read its labels (:func:`~cytolens.store.database.open_store`, creating none).

    Raises:
        DataError: If ``location`` is a file that does not exist, or cannot be opened as a store.

    """
    if "://" not in str(location) and not Path(location).exists():
        raise DataError(location, "no such annotation store (a missing store file is not created here)")
    return open_store(location, root)


def read_dataset(store: Store, classes: list[str] | None = None, name: str = "") -> Dataset:
    """Every labelled image of the store (labels saved at least once, even with no cell) with its current labels.

    Each image's ``image_id`` is its stored name (unique, unlike file stems in subfolders) and its path the file
    under the store's root; a cell of unknown class is :data:`~cytolens.data.cells.UNCLASSIFIED`; a cell marked
    by its centre has a row of NaN for its box when others have boxes. The dataset names no splits.

    Args:
        store: The store.
        classes: The class names in order; a label of another class is an error. By default the names labelled,
            sorted (:meth:`~cytolens.data.annotations.Dataset.relabel` reorders them).
        name: The dataset's name (by default the store's).

    Raises:
        DataError: If a label's class is not in ``classes``.

    """
    with store.transaction() as session:
        images = session.scalars(
            select(Image).join(ImageLabels).where(ImageLabels.version > 0).order_by(Image.path)
        ).all()
        rows = session.scalars(
            select(Label)
            .join(ImageLabels, Label.image_id == ImageLabels.image_id)
            .where(ImageLabels.version > 0, ~Label.deleted)
            .order_by(Label.id)
        ).all()
    names = ClassNames(classes if classes is not None else sorted({row.class_name for row in rows} - {None}))
    by_image: dict[int, list[Label]] = {image.id: [] for image in images}
    for row in rows:
        by_image[row.image_id].append(row)
    annotated = []
    for image in images:
        labels = by_image[image.id]
        boxes = np.array([[np.nan] * 4 if row.x1 is None else [row.x1, row.y1, row.x2, row.y2] for row in labels])
        cells = Cells(
            labels=[
                UNCLASSIFIED if row.class_name is None else names.index(row.class_name, image.path) for row in labels
            ],
            centres=[(row.x, row.y) for row in labels],
            boxes=boxes if any(row.x1 is not None for row in labels) else None,
        )
        annotated.append(AnnotatedImage(store.root / image.path, image.width, image.height, image.path, cells=cells))
    return Dataset(names.names, annotated, name=name or store.name)
