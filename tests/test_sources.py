"""The images a user names (files, folders, globs) and their ids: relative paths that keep sub-folders apart."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cytolens.errors import DataError
from cytolens.inference.sources import expand_inputs, find_images
from helpers import write_image


@pytest.fixture
def slides(tmp_path: Path) -> Path:
    """``slides/overview.png`` and ``field1.png`` in ``slides/slideA`` and in ``slides/slideB/left``."""
    for name in ("overview.png", "slideA/field1.png", "slideB/left/field1.png"):
        write_image(tmp_path / "slides" / name)
    (tmp_path / "slides" / "slideB" / "left" / "notes.txt").touch()  # not an image
    return tmp_path / "slides"


def test_ids_are_paths_relative_to_the_input_without_suffix(slides: Path) -> None:
    assert find_images([slides], recursive=True) == {
        slides / "overview.png": "overview",
        slides / "slideA" / "field1.png": "slideA/field1",
        slides / "slideB" / "left" / "field1.png": "slideB/left/field1",
    }
    assert find_images([slides / "slideA" / "field1.png"]) == {slides / "slideA" / "field1.png": "field1"}
    deeper = slides / "slideB" / "left" / "field1.png"
    assert find_images([slides / "slideB"], recursive=True) == {deeper: "left/field1"}


def test_a_glob_pattern_keeps_the_folders_below_its_fixed_part(slides: Path) -> None:
    assert find_images([f"{slides}/*/field1.png"]) == {slides / "slideA" / "field1.png": "slideA/field1"}
    assert list(find_images([f"{slides}/**/*.png"]).values()) == ["overview", "slideA/field1", "slideB/left/field1"]


def test_a_file_named_twice_is_listed_once_with_its_first_id(slides: Path) -> None:
    files = find_images([slides / "slideA" / "field1.png", slides], recursive=True)
    assert list(files.values()) == ["field1", "overview", "slideB/left/field1"]
    assert expand_inputs([slides / "slideA" / "field1.png", slides], recursive=True) == list(files)


def test_a_folder_of_folders_without_recursive_is_one_error_saying_to_add_it(slides: Path) -> None:
    with pytest.raises(DataError, match="holds no images itself, only sub-folders with images: add -r") as caught:
        find_images([slides / "slideB"])
    assert caught.value.path == slides / "slideB"


def test_images_left_in_sub_folders_are_named_in_one_warning(slides: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert find_images([slides]) == {slides / "overview.png": "overview"}
    assert [record.getMessage() for record in caplog.records] == [
        f"{slides}: the images in its sub-folders are left out; add -r (--recursive; recursive=True in Python) "
        "to read them"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        find_images([slides / "slideA"])  # no sub-folders: nothing to say
    assert not caplog.records


def test_inputs_that_match_nothing_are_one_error(slides: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        find_images([slides / "missing.png"])
    with pytest.raises(DataError, match="the pattern matches no image files"):
        find_images([f"{slides}/*.jpg"])
