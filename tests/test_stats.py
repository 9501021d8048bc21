"""``dataset_stats`` on the shared datasets (true counts) and on small generated cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.data.stats import dataset_stats, nearest_neighbour_distances
from cytolens.io.spec import load_data


def test_crchisto_train_and_validation_nuclei(crchisto: Path) -> None:
    figures = dataset_stats(load_data(crchisto, "crchisto"))
    assert figures["images"] == 80
    assert figures["objects"] == figures["points"] == 23254
    assert figures["splits"] == {"train": 70, "validation": 10}
    classified = sum(figures["per_class"].values())
    assert classified + figures["unclassified_points"] == 23254
    assert 3 < figures["point_spacing"]["median"] < 15  # nuclei a few micrometres apart at 500x500


@pytest.mark.parametrize(("name", "crops", "size"), [("erythrocytesidb", 626, 80), ("cric", 2121, 100)])
def test_class_folder_crops_count_labels(name: str, crops: int, size: int, request: pytest.FixtureRequest) -> None:
    figures = dataset_stats(load_data(request.getfixturevalue(name), "folders"))
    assert figures["images"] == figures["image_labels"] == crops
    assert figures["objects"] == 0
    assert figures["per_class_counts"] == "image_labels"
    assert sum(figures["per_class"].values()) == crops
    assert figures["image_size"]["width"]["median"] == size


def test_generated_points_boxes_and_splits() -> None:
    classes = ["a", "b"]
    first = AnnotatedImage(
        Path("one.png"), 100, 50,
        cells=Cells.concatenate([
            Cells(boxes=[[0, 0, 10, 20], [5, 5, 35, 15]], labels=[0, 1]),
            Cells(centres=[[0, 0], [3, 4], [20, 0]], labels=[1, UNCLASSIFIED, 1]),
        ]),
    )
    second = AnnotatedImage(Path("two.png"), 60, 40, cells=Cells(centres=[[1, 1]], labels=[0]))  # alone: no neighbour
    dataset = Dataset(classes, [first, second], {"train": ["one", "missing"], "test": ["two"]}, "made")
    figures = dataset_stats(dataset)
    assert figures["objects"] == 6 and figures["boxes"] == 2 and figures["points"] == 4
    assert figures["unclassified_points"] == 1
    assert figures["per_class"] == {"a": 2, "b": 3}
    assert figures["per_class_counts"] == "objects"
    assert figures["splits"] == {"train": 1, "test": 1}  # only the images present count
    assert figures["image_size"]["width"] == {"min": 60.0, "median": 80.0, "max": 100.0}
    assert figures["box_size"]["b"] == {"width": {"min": 30.0, "median": 30.0, "max": 30.0},
                                        "height": {"min": 10.0, "median": 10.0, "max": 10.0}}
    assert figures["point_spacing"] == pytest.approx({"min": 5.0, "median": 5.0, "max": 305 ** 0.5})  # per image


def test_empty_dataset_has_no_sizes() -> None:
    figures = dataset_stats(Dataset(["a"], []))
    assert figures["images"] == figures["objects"] == 0
    assert figures["per_class"] == {"a": 0}
    assert figures["image_size"]["width"] == {"min": None, "median": None, "max": None}
    assert figures["box_size"] == {}


def test_nearest_neighbour_distances() -> None:
    assert nearest_neighbour_distances(np.zeros((1, 2))).size == 0
    np.testing.assert_allclose(nearest_neighbour_distances(np.array([[0, 0], [0, 3], [0, 10]])), [3, 3, 7])
