from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from cytolens.errors import CytolensError, DataError
from cytolens.io import read_dataset, write_dataset
from cytolens.io.masks import mask_boxes
from helpers import write_image


def _three_blobs() -> np.ndarray:
    mask = np.zeros((30, 40), np.uint8)
    mask[2:6, 3:10] = 255  # rows 2-5, cols 3-9
    mask[10:20, 30:40] = 255  # touches the right edge
    mask[25, 0] = mask[26, 1] = mask[27, 2] = mask[28, 3] = 255  # diagonal: one component under 8-connectivity
    return mask


def _dataset(root: Path, masks: dict[str, np.ndarray]) -> Path:
    for stem, mask in masks.items():
        write_image(root / "images" / f"{stem}.jpg", mask.shape[1], mask.shape[0])
        (root / "masks").mkdir(parents=True, exist_ok=True)
        if mask.dtype == np.uint16:
            tifffile.imwrite(root / "masks" / f"{stem}.tif", mask)
        else:
            Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
    return root


def test_binary_mask_gives_exact_pixel_edge_boxes(tmp_path: Path) -> None:
    dataset = read_dataset(_dataset(tmp_path, {"a": _three_blobs()}), "masks")
    image = dataset.images[0]
    assert dataset.classes == ["cell"] and image.size == (40, 30)
    np.testing.assert_array_equal(image.cells.boxes, [[3, 2, 10, 6], [30, 10, 40, 20], [0, 25, 4, 29]])
    np.testing.assert_array_equal(image.cells.labels, [0, 0, 0])
    assert image.cells.scores is None


def test_instance_mask_gives_one_box_per_value(tmp_path: Path) -> None:
    mask = np.zeros((30, 40), np.uint16)
    mask[0:5, 0:5] = 300
    mask[4:8, 4:9] = 7  # touches instance 300 but stays separate
    mask[20:22, 0:3] = mask[25:27, 30:33] = 12  # one instance in two pieces
    dataset = read_dataset(_dataset(tmp_path, {"b": mask}), "masks", classes=["nucleus"])
    assert dataset.classes == ["nucleus"]
    np.testing.assert_array_equal(dataset.images[0].cells.boxes, [[4, 4, 9, 8], [0, 20, 33, 27], [0, 0, 5, 5]])


def test_small_components_are_ignored_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mask = _three_blobs()
    mask[0, 39] = mask[29, 20] = mask[28, 20] = 255  # two specks of 1 and 2 pixels
    with caplog.at_level(logging.WARNING):
        dataset = read_dataset(_dataset(tmp_path, {"a": mask, "empty": np.zeros((30, 40), np.uint8)}), "masks")
    assert [len(image.cells) for image in dataset.images] == [3, 0]
    assert "ignored 2 mask components smaller than 4 pixels" in caplog.text
    boxes, ignored = mask_boxes(mask, min_area=1)
    assert (len(boxes), ignored) == (5, 0)


def test_rgb_mask_with_equal_channels_is_accepted(tmp_path: Path) -> None:
    dataset = read_dataset(_dataset(tmp_path, {"a": np.repeat(_three_blobs()[:, :, None], 3, axis=2)}), "masks")
    assert len(dataset.images[0].cells) == 3


@pytest.mark.parametrize(
    ("mask", "problem"),
    [
        (np.zeros((10, 10), np.uint8), "mask is 10x10 but its image is 40x30"),
        (np.dstack([_three_blobs(), np.zeros((30, 40), np.uint8), _three_blobs()]), "3 different channels"),
    ],
)
def test_bad_masks_name_the_file(tmp_path: Path, mask: np.ndarray, problem: str) -> None:
    write_image(tmp_path / "images" / "a.png", 40, 30)
    (tmp_path / "masks").mkdir()
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    with pytest.raises(DataError, match=problem) as error:
        read_dataset(tmp_path, "masks")
    assert error.value.path == tmp_path / "masks" / "a.png"


def test_missing_folders_and_masks(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images/ inside"):
        read_dataset(tmp_path, "masks")
    write_image(tmp_path / "images" / "a.png", 40, 30)
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="no mask a"):
        read_dataset(tmp_path, "masks")


def test_masks_are_read_only(tmp_path: Path) -> None:
    dataset = read_dataset(_dataset(tmp_path / "in", {"a": _three_blobs()}), "masks")
    with pytest.raises(CytolensError, match="can be read but not written"):
        write_dataset(dataset, tmp_path / "out", "masks")
