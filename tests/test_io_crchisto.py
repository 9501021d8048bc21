"""CRCHistoPhenotypes: the real counts (also through ``cytolens stats``), class matching, bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from typer.testing import CliRunner

from cytolens.data.annotations import UNCLASSIFIED
from cytolens.errors import DataError
from cytolens.io import crchisto as crchisto_format
from cytolens.io import read_dataset
from helpers import write_image


def image_folder(root: Path, name: str, nuclei: list, classes: dict[str, list] | None = None) -> Path:
    """``root/<name>/`` with a 40x30 image, the detection file and the four class files (MATLAB coordinates)."""
    folder = root / name
    write_image(folder / f"{name}.bmp", 40, 30)
    scipy.io.savemat(folder / f"{name}_detection.mat", {"detection": np.array(nuclei, dtype=float).reshape(-1, 2)})
    for class_name in crchisto_format.CLASSES:
        points = np.array((classes or {}).get(class_name, []), dtype=float).reshape(-1, 2)
        scipy.io.savemat(folder / f"{name}_{class_name}.mat", {"detection": points})
    return folder


def test_real_dataset_counts_and_splits(crchisto: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        dataset = read_dataset(crchisto, "crchisto")
    assert len(dataset) == 80
    assert {split: len(ids) for split, ids in dataset.splits.items()} == {"train": 70, "validation": 10}
    assert dataset.images[0].image_id == "train/img1" and dataset.images[0].size == (500, 500)
    assert sum(len(image.cells) for image in dataset) == 23254
    counts = dataset.object_counts()
    assert sum(counts[name] for name in crchisto_format.CLASSES) == 17801 - 6  # six class points match no nucleus
    assert "6 class point(s) dropped in total" in caplog.text
    points = np.concatenate([image.cells.centres for image in dataset])
    assert points.min() >= 0 and points.max() <= 500


def test_cytolens_stats_counts_every_nucleus(crchisto: Path) -> None:
    from cytolens.cli.main import app

    result = CliRunner().invoke(app, ["stats", "--data", str(crchisto), "--format", "crchisto", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["images"] == 80 and figures["objects"] == 23254


def test_one_split_folder(crchisto: Path) -> None:
    dataset = read_dataset(crchisto / "validation", "crchisto")
    assert len(dataset) == 10 and dataset.splits == {}
    assert all("/" not in image.image_id for image in dataset)


def test_class_points_label_the_nearest_nucleus_within_the_radius(tmp_path: Path, caplog) -> None:
    nuclei = [[1, 1], [11, 11], [21, 21], [31, 1], [0.2, 30.4]]
    classes = {"epithelial": [[1, 1]], "fibroblast": [[12, 12]], "inflammatory": [[11, 11.5]], "others": [[35, 25]]}
    image_folder(tmp_path, "img3", nuclei, classes)
    with caplog.at_level(logging.WARNING):
        dataset = crchisto_format.read(tmp_path)
    image = dataset.images[0]
    assert (image.image_id, image.size, dataset.splits) == ("img3", (40, 30), {})
    np.testing.assert_allclose(image.cells.centres, [[0.5, 0.5], [10.5, 10.5], [20.5, 20.5], [30.5, 0.5], [0, 29.9]])
    epithelial, inflammatory = dataset.classes.index("epithelial"), dataset.classes.index("inflammatory")
    assert image.cells.labels.tolist() == [epithelial, inflammatory, UNCLASSIFIED, UNCLASSIFIED, UNCLASSIFIED]
    assert "img3: 2 class point(s) with no unclaimed nucleus within 6 px: dropped" in caplog.text
    assert "2 class point(s) dropped in total" in caplog.text
    assert "1 point(s) outside the 40x30 image" in caplog.text


def test_root_with_splits_and_empty_files(tmp_path: Path) -> None:
    image_folder(tmp_path / "train", "img10", [[5, 5]], {"others": [[5, 5]]})
    image_folder(tmp_path / "train", "img9", [])
    image_folder(tmp_path / "validation", "img2", [[5, 5]])
    dataset = crchisto_format.read(tmp_path)
    assert dataset.splits == {"train": ["train/img9", "train/img10"], "validation": ["validation/img2"]}
    assert dataset.object_counts() == {"others": 1, "unclassified": 1}


def test_class_order_can_be_given(tmp_path: Path) -> None:
    image_folder(tmp_path, "img1", [[5, 5]], {"others": [[5, 5]]})
    order = ["others", "inflammatory", "fibroblast", "epithelial"]
    assert crchisto_format.read(tmp_path, classes=order).images[0].cells.labels.tolist() == [0]
    with pytest.raises(DataError, match="'others' is not in the class map"):
        crchisto_format.read(tmp_path, classes=order[1:])


def test_bad_input_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found"):
        crchisto_format.read(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no image folders"):
        crchisto_format.read(tmp_path)
    folder = image_folder(tmp_path, "img1", [[5, 5]])
    (folder / "img1_others.mat").unlink()
    with pytest.raises(DataError, match="img1_others.mat: file not found"):
        crchisto_format.read(tmp_path)
    scipy.io.savemat(folder / "img1_others.mat", {"points": np.zeros((1, 2))})
    with pytest.raises(DataError, match="img1_others.mat: has no 'detection' variable"):
        crchisto_format.read(tmp_path)
    scipy.io.savemat(folder / "img1_others.mat", {"detection": np.zeros((2, 3))})
    with pytest.raises(DataError, match=r"expected \(N, 2\)"):
        crchisto_format.read(tmp_path)
    (folder / "img1_others.mat").write_text("not a MATLAB file")
    with pytest.raises(DataError, match="img1_others.mat: cannot read MATLAB file"):
        crchisto_format.read(tmp_path)
    (folder / "img1.bmp").unlink()
    with pytest.raises(DataError, match="no image img1.png"):
        crchisto_format.read(tmp_path)
