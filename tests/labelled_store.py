"""A small SQLite annotation store holding real BCCD images, some labelled with their BCCD boxes (for the store's
export and training tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

from cytolens.data.annotations import Dataset
from cytolens.io.spec import load_data
from cytolens.store.database import open_store
from cytolens.store.images import add_images
from cytolens.store.labels import LabelDraft, save_labels

LABELLED = ("BloodImage_00001", "BloodImage_00002", "BloodImage_00003")
UNLABELLED = "BloodImage_00004"


def labelled_store(
    bccd: Path, folder: Path, labelled: tuple[str, ...] = LABELLED, extra: tuple[LabelDraft, ...] = ()
) -> tuple[Path, Path, Dataset]:
    """A store ``folder/labels.db`` with root ``folder/images``: the ``labelled`` BCCD images and one unlabelled.

    Each labelled image holds its BCCD boxes as an expert's labels (centre, box, class); the first also
    ``extra``.

    Returns:
        The store file, the image root, and the BCCD annotations of the labelled images.

    """
    root = folder / "images"
    root.mkdir(parents=True)
    for stem in (*labelled, UNLABELLED):
        shutil.copy(bccd / "JPEGImages" / f"{stem}.jpg", root / f"{stem}.jpg")
    original = load_data(bccd, "voc")
    original = Dataset(original.classes, [image for image in original.images if image.image_id in labelled])
    store_file = folder / "labels.db"
    with open_store(store_file, root) as store:
        add_images(store)
        for number, image in enumerate(original.images):
            cells = image.cells
            drafts = [
                LabelDraft(tuple(cells.centres[i].tolist()), tuple(cells.boxes[i].tolist()), original.classes[label])
                for i, label in enumerate(cells.labels)
            ]
            save_labels(store, f"{image.image_id}.jpg", [*drafts, *(extra if number == 0 else ())], 0, "expert")
    return store_file, root, original
