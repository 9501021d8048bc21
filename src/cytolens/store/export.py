"""A store's expert labels written as a dataset that ``cytolens train`` reads back (``cytolens export --store``).

The labelled images (:func:`~cytolens.store.dataset.read_dataset`) are written with the format's writer
(:func:`cytolens.io.convert.export_dataset`: images placed inside the output, written whole or not at all).
Each image's id is its stored name made a file name: without its suffix, folders joined by ``__``
(``sub/a.jpg`` -> ``sub__a``). A format that holds points but no boxes gets every labelled cell by its
centre; one that holds boxes but no points leaves out the cells labelled by their centre alone (counted).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from cytolens.data.annotations import Dataset
from cytolens.data.splits import ratio_split
from cytolens.data.transforms import boxes_to_points
from cytolens.errors import DataError
from cytolens.io.convert import export_dataset
from cytolens.io.registry import capabilities
from cytolens.store.database import Store
from cytolens.store.dataset import read_dataset


@dataclass(frozen=True)
class LabelExport:
    """What :func:`export_labels` wrote.

    Attributes:
        images: Labelled images written.
        cells: Their labelled cells (before anything the format could not hold was dropped).
        classes: The class names, in the order written.
        splits: Images per split (empty: no splits).
        dropped: What the format could not hold, as counts by kind.

    """

    images: int
    cells: int
    classes: list[str]
    splits: dict[str, int]
    dropped: dict[str, int]


def file_ids(dataset: Dataset, source: str) -> Dataset:
    """The dataset with each stored image name made a file name: no suffix, ``/`` as ``__``.

    Raises:
        DataError: Naming ``source``, if two images would get the same name.

    """
    named: dict[str, str] = {}
    images = []
    for image in dataset.images:
        key = "__".join(PurePosixPath(image.image_id).with_suffix("").parts)
        if key in named:
            raise DataError(source, f"images {named[key]} and {image.image_id} would be exported under one name {key}")
        named[key] = image.image_id
        images.append(replace(image, image_id=key))
    return replace(dataset, images=images)


def export_labels(
    store: Store, fmt: str, out: str | Path, val_fraction: float | None = None, seed: int = 0, exist_ok: bool = False
) -> LabelExport:
    """Write the store's labelled images and their current labels to ``out`` as a dataset in format ``fmt``.

    Args:
        store: The store.
        fmt: The format: one whose writer :func:`~cytolens.io.convert.export_dataset` gives a dataset that reads
            back (``coco``, ``points``, ``voc``, ``yolo``).
        out: The output folder; new or empty unless ``exist_ok``.
        val_fraction: Write splits ``train`` and ``val``, ``val`` a seeded fraction (between 0 and 1) of the
            images, for formats that hold splits; ``None``: no splits.
        seed: The seed of the split.
        exist_ok: Replace an existing ``out`` whole.

    Raises:
        DataError: Naming the store if it holds no labelled image, or the split leaves a part empty; as
            :func:`~cytolens.io.convert.export_dataset` for the output.

    """
    dataset = read_dataset(store)
    if not len(dataset):
        raise DataError(store.name, "holds no labelled images to export (labels are saved by cytolens review)")
    dataset = file_ids(dataset, store.name)
    cells = sum(len(image.cells) for image in dataset.images)
    if not capabilities(fmt).boxes:
        dataset = boxes_to_points(dataset)
    if val_fraction is not None:
        ids = [image.image_id for image in dataset.images]
        splits = ratio_split(ids, {"train": 1 - val_fraction, "val": val_fraction}, seed)
        if not (splits["train"] and splits["val"]):
            raise DataError(
                store.name,
                f"a validation fraction of {val_fraction} of its {len(ids)} labelled images leaves none for "
                f"{'training' if splits['val'] else 'validation'}",
            )
        dataset = replace(dataset, splits=splits)
    dropped = export_dataset(dataset, fmt, out, exist_ok=exist_ok)
    splits = {name: len(ids) for name, ids in dataset.splits.items()}
    return LabelExport(len(dataset), cells, list(dataset.classes), splits, dropped)
