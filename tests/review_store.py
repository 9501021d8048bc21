"""A small annotation store for the review app's tests: two real BCCD images and one recorded round.

The round's proposals are made by hand (no model runs): on ``BloodImage_00007.jpg`` (relevance 12, first in the
queue) an uncertain box (Uc 0.5), a confident box and a confident point; on ``BloodImage_00011.jpg`` (relevance 3)
one confident box. The proposing model version is the bundled ``blood-cells`` file (only its card is read).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from cytolens.data.annotations import AnnotatedImage
from cytolens.data.cells import Cells
from cytolens.examples import path as examples_path
from cytolens.models.registry import bundled_models
from cytolens.store.database import Store, open_store
from cytolens.store.images import add_images
from cytolens.store.rounds import add_model_version, record_round

CLASSES = ["WBC", "RBC", "Platelets"]
FIRST, SECOND = "BloodImage_00007.jpg", "BloodImage_00011.jpg"
UNCERTAIN_BOX = (100.0, 100.0, 160.0, 150.0)
CONFIDENT_BOX = (300.0, 200.0, 360.0, 260.0)
CONFIDENT_POINT = (500.0, 400.0)


def review_store(folder: Path) -> Store:
    """Open a new SQLite store in ``folder`` (images under ``folder/images``) holding the round described above."""
    images = folder / "images"
    images.mkdir()
    for name in (FIRST, SECOND):
        shutil.copy(examples_path() / "JPEGImages" / name, images / name)
    store = open_store(folder / "labels.db", images)
    add_images(store)
    version = add_model_version(store, bundled_models()["blood-cells"])
    nan = [np.nan] * 4
    first = Cells(
        labels=[1, 1, 2],
        centres=[(130.0, 125.0), (330.0, 230.0), CONFIDENT_POINT],
        boxes=[UNCERTAIN_BOX, CONFIDENT_BOX, nan],
        scores=[0.6, 0.95, 0.9],
        extras={"Ud": [0.95, 0.97, 1.0], "Uc": [0.5, 1.0, 0.95], "Ur": [0.0, 0.0, 0.0]},
    )
    second = Cells(labels=[0], boxes=[(50.0, 60.0, 150.0, 170.0)], scores=[0.99], extras={"Ud": [1.0], "Uc": [1.0]})
    predictions = [
        AnnotatedImage(images / FIRST, 640, 480, cells=first),
        AnnotatedImage(images / SECOND, 640, 480, cells=second),
    ]
    record_round(store, version, CLASSES, predictions, relevance=[12.0, 3.0])
    return store
