"""Stained-cell masks and the known pixels of partially labelled images, on real Chula RBC-12 fields."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cytolens.data.annotations import Dataset
from cytolens.data.cells import Cells
from cytolens.data.partial_labels import known_pixels, stained_mask
from cytolens.io.images import read_image
from cytolens.io.spec import load_data
from cytolens.metrics.unlabelled import drop_unlabelled_detections
from cytolens.training.point_data import PointDataset
from cytolens.training.proximity import nearest_centre


@pytest.fixture
def fields(chula):
    """Image 40 (every red cell labelled, 116 centres) and image 598 (4 of about 90 cells labelled)."""
    data = load_data(chula, "chula")
    return {image.image_id: image for image in data.images if image.image_id in ("40", "598")}, data


def test_labelled_centres_lie_on_stained_pixels(fields):
    images, _ = fields
    for image in images.values():
        mask = stained_mask(read_image(image.path))
        cols, rows = np.minimum(image.cells.centres.astype(int).T, [[image.width - 1], [image.height - 1]])
        assert mask[rows, cols].mean() == 1.0
        assert 0.2 < mask.mean() < 0.8  # cells and background both present


def test_uniform_image_has_nothing_stained():
    assert not stained_mask(np.full((20, 30, 3), 200, dtype=np.uint8)).any()


def test_known_pixels_leave_out_unlabelled_cells(fields):
    images, data = fields
    sparse = images["598"]
    stained = stained_mask(read_image(sparse.path))
    distance, _ = nearest_centre(sparse.cells.centres, stained.shape, 24.0)
    known = known_pixels(stained, distance, 24.0)
    assert known.dtype == np.float32
    assert (known[distance <= 24] == 1).all() and (known[~stained] == 1).all()
    assert 0.4 < 1 - known.mean() < 0.6  # about half of the field is unlabelled cells (measured 0.49)
    full = images["40"]
    distance, _ = nearest_centre(full.cells.centres, stained.shape, 24.0)
    assert 1 - known_pixels(stained_mask(read_image(full.path)), distance, 24.0).mean() < 0.15  # edge cells: 0.10
    # the dataset hands the same map to the loss (validation samples are whole images)
    data.images = [sparse]
    sample = PointDataset(data, d=16.0, train=False, ignore_unlabelled=True)[0]
    np.testing.assert_array_equal(sample["known"].numpy(), known)
    assert PointDataset(data, d=16.0, train=False)[0]["known"].min() == 1.0


def test_detections_on_unlabelled_cells_are_dropped(fields):
    images, data = fields
    sparse = images["598"]
    stained = stained_mask(read_image(sparse.path))
    distance, _ = nearest_centre(sparse.cells.centres, stained.shape, np.inf)
    rows, cols = np.nonzero(stained & (distance > 60))
    on_cell = [cols[0] + 0.5, rows[0] + 0.5]
    rows, cols = np.nonzero(~stained & (distance > 60))
    on_background = [cols[0] + 0.5, rows[0] + 0.5]
    found = dataclasses.replace(
        sparse,
        cells=Cells(
            centres=np.vstack([sparse.cells.centres + 13, [on_cell, on_background]]),  # 13 px off: beyond r, within 2r
            labels=np.zeros(len(sparse.cells) + 2, dtype=int),
            scores=np.ones(len(sparse.cells) + 2),
        ),
    )
    kept, dropped = drop_unlabelled_detections(Dataset(data.classes, [found]), Dataset(data.classes, [sparse]), 12.0)
    assert dropped == 1
    np.testing.assert_allclose(kept.images[0].cells.centres, np.vstack([sparse.cells.centres + 13, [on_background]]))
    assert len(kept.images[0].cells.scores) == len(kept.images[0].cells.labels) == len(sparse.cells) + 1
