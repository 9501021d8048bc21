"""Class probabilities in napari CSVs (``p_<class>``, named as in cells.csv), and the package-level ``load_model``
making a detect -> classify pipeline from a bundled detector and a classifier file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cytolens
from cytolens.data.annotations import Dataset
from cytolens.data.cells import Cells
from cytolens.inference.pipeline import Pipeline
from cytolens.io.images import read_image
from cytolens.io.points_csv import write_napari
from cytolens.results.result import Result
from cytolens.results.writers import PredictionWriter
from test_patch_predict import CLASSES, tiny_classifier


def napari_properties(path: Path) -> dict[str, np.ndarray]:
    """The point properties napari's built-in CSV reader makes of ``path``: every column but ``index`` and
    ``axis-*``, numbers as numbers (napari_builtins.io._read._points_csv_to_layerdata)."""
    table = pd.read_csv(path, keep_default_na=False)
    return {name: table[name].to_numpy() for name in table.columns if name != "index" and not name.startswith("axis-")}


def test_napari_csv_carries_one_probability_column_per_class_named_as_in_cells_csv(tmp_path: Path) -> None:
    probabilities = [[0.7, 0.2, 0.1], [0.125, 0.5, 0.375]]
    cells = Cells(centres=[[10.5, 3.5], [20, 30]], labels=[0, 1], scores=[0.9, 0.8], probabilities=probabilities)
    result = Result(tmp_path / "a.png", 64, 48, cells=cells, classes=CLASSES)
    (path,) = write_napari(Dataset(CLASSES, [result]), tmp_path / "napari")
    columns = pd.read_csv(path).columns.tolist()
    table_columns = [name for name in result.to_dataframe().columns if name.startswith("p_")]
    assert columns == ["index", "axis-0", "axis-1", "class", "score", "p_circular", "p_elongated", "p_other"]
    assert columns[5:] == table_columns
    properties = napari_properties(path)
    assert properties["class"].tolist() == ["circular", "elongated"]
    np.testing.assert_array_equal(np.column_stack([properties[name] for name in columns[5:]]), probabilities)


def test_napari_csv_without_probabilities_keeps_its_columns(tmp_path: Path) -> None:
    cells = Cells(centres=[[1, 2]], labels=[2], scores=[0.5])
    result = Result(tmp_path / "a.png", 64, 48, cells=cells, classes=CLASSES)
    (path,) = write_napari(Dataset(CLASSES, [result]), tmp_path)
    assert pd.read_csv(path).columns.tolist() == ["index", "axis-0", "axis-1", "class", "score"]


@pytest.mark.usefixtures("one_thread")
def test_package_load_model_with_a_classifier_gives_a_pipeline_whose_napari_csv_has_probabilities(
    chula: Path, tmp_path: Path
) -> None:
    model = cytolens.load_model("rbc-morphology-points", device="cpu", classifier=tiny_classifier(tmp_path / "c.pt"))
    assert isinstance(model, Pipeline) and model.classes == CLASSES
    pixels = read_image(chula / "Dataset" / "10.jpg")[:160, :160]  # a corner: a few red cells
    (result,) = model.predict([pixels])
    assert len(result.cells) > 0 and result.cells.probabilities.shape == (len(result.cells), len(CLASSES))
    writer = PredictionWriter(tmp_path / "out", model.classes, outputs=("csv", "napari"))
    writer.add(result)
    writer.close()
    cells_table = pd.read_csv(tmp_path / "out" / "cells.csv")
    napari_table = pd.read_csv(tmp_path / "out" / "napari" / f"{result.image_id}.csv")
    names = [f"p_{name}" for name in CLASSES]
    np.testing.assert_allclose(napari_table[names].to_numpy(), cells_table[names].to_numpy())
    np.testing.assert_allclose(napari_table[names].sum(axis=1), 1, atol=1e-6)  # softmax: one probability per cell
