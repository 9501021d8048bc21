"""Fault class: text files a reader cannot decode.

Every text file a format reader opens (split lists, label files, image lists, ``data.yaml``, CSV and
JSON files) goes through ``read_text`` (and ``read_json`` for JSON), so non-UTF-8 bytes, a NUL byte or
a folder where the file should be end ``cytolens stats`` with one line naming that file, never a bare
``'utf-8' codec can't decode``, and never read as "no objects". JSON is read strictly: ``NaN``,
``Infinity`` and numbers too large for a float are refused. All fixtures are generated in ``tmp_path``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from cytolens.io.registry import read_dataset
from test_faults_readers import (
    BUILDERS,
    assert_one_line_error,
    coco_dataset,
    geojson_dataset,
    label_studio_dataset,
    point_feature,
    stats,
    voc_dataset,
    yolo_dataset,
)


def _yolo_with_list(root: Path) -> tuple[Path, Path]:
    """A YOLO dataset whose train split is the image list ``train.txt``."""
    data, _ = yolo_dataset(root)
    (root / "data.yaml").write_text("names: [RBC]\ntrain: train.txt\nval: train.txt\n")
    (root / "train.txt").write_text("images/train/a.png\n")
    return data, root / "train.txt"


TEXT_FILES: dict[str, tuple[str, Callable[[Path], tuple[Path, Path]], str]] = {
    "voc split list": ("voc", lambda root: (voc_dataset(root)[0], root / "ImageSets" / "Main" / "train.txt"),
                       "split list"),
    "coco json": ("coco", coco_dataset, "COCO JSON file"),
    "yolo data.yaml": ("yolo", lambda root: (yolo_dataset(root)[0], root / "data.yaml"), "YOLO data.yaml"),
    "yolo label file": ("yolo", yolo_dataset, "label file"),
    "yolo image list": ("yolo", _yolo_with_list, "image list"),
    "points csv": ("points", BUILDERS["points"], "points CSV file"),
    "chula label file": ("chula", BUILDERS["chula"], "label file"),
    "geojson": ("geojson", geojson_dataset, "GeoJSON file"),
    "label-studio json": ("label-studio", label_studio_dataset, "Label Studio JSON file"),
}
"""What a text file is, to the format reading it, the builder of a dataset holding it, and its name in messages."""


def _not_utf8(file: Path) -> str:
    data = file.read_bytes()
    file.write_bytes(data[:-2] + b"\xff" + data[-2:])
    return "is not UTF-8 text"


def _nul_byte(file: Path) -> str:
    data = file.read_bytes()
    file.write_bytes(data[:-2] + b"\x00" + data[-2:])
    return "holds a NUL byte"


def _folder(file: Path) -> str:
    file.unlink()
    file.mkdir()
    return "is a folder, not a file"


FAULTS = {"non-UTF-8": _not_utf8, "NUL byte": _nul_byte, "folder": _folder}
"""Fault name to a function that plants it in a file and returns the problem the message must state."""

CASES = [(kind, fault) for kind in TEXT_FILES for fault in FAULTS if (kind, fault) != ("yolo image list", "folder")]
# A split entry that is a folder is a folder of images, by the YOLO rules: not a fault.


@pytest.mark.parametrize(("kind", "fault"), CASES, ids=[f"{kind}-{fault}" for kind, fault in CASES])
def test_an_undecodable_text_file_is_one_line_naming_it(tmp_path: Path, kind: str, fault: str) -> None:
    fmt, build, what = TEXT_FILES[kind]
    data, file = build(tmp_path)
    problem = FAULTS[fault](file)
    assert_one_line_error(stats(data, fmt), file, f"{what} {problem}")


def test_a_missing_yolo_label_file_is_an_image_without_objects_but_a_broken_link_is_an_error(tmp_path: Path) -> None:
    data, label = yolo_dataset(tmp_path)
    label.unlink()
    assert len(read_dataset(data, "yolo").images[0].cells) == 0
    label.symlink_to(tmp_path / "gone.txt")
    assert_one_line_error(stats(data, "yolo"), label, "label file not found")


STRICT_JSON = [
    ("NaN", "NaN", "holds NaN, which is not a JSON number"),
    ("Infinity", "Infinity", "holds Infinity, which is not a JSON number"),
    ("-Infinity", "-Infinity", "holds -Infinity, which is not a JSON number"),
    ("1e400", "1e400", "holds the number 1e400, too large for a float"),
    ("huge integer", "9" * 5000, "holds a number Python cannot read"),
]


JSON_FORMATS = {
    "coco": coco_dataset,
    "geojson": lambda root, text: geojson_dataset(root, [point_feature((10, 7))], text),
    "label-studio": label_studio_dataset,
}
"""JSON format to a builder of a dataset whose first ``10`` in the file is a coordinate."""


@pytest.mark.parametrize("fmt", JSON_FORMATS)
@pytest.mark.parametrize(("token", "problem"), [case[1:] for case in STRICT_JSON], ids=[c[0] for c in STRICT_JSON])
def test_json_numbers_that_are_not_finite_are_refused(tmp_path: Path, fmt: str, token: str, problem: str) -> None:
    data, file = JSON_FORMATS[fmt](tmp_path, text=lambda text: text.replace("10", token, 1))
    assert token in file.read_text()
    assert_one_line_error(stats(data, fmt), file, problem)


def test_invalid_and_too_deeply_nested_json_name_the_file(tmp_path: Path) -> None:
    data, file = geojson_dataset(tmp_path, text=lambda text: text[:-1])
    assert_one_line_error(stats(data, "geojson"), file, "GeoJSON file is not valid JSON at line 1 column")
    file.write_text('{"type": "FeatureCollection", "features": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert_one_line_error(stats(data, "geojson"), file, "GeoJSON file is nested too deeply to read")


def test_an_unreadable_licence_is_a_warning_and_the_annotations_still_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, _ = voc_dataset(tmp_path)
    (tmp_path / "LICENSE").write_bytes(b"Licence \xff\n")
    with caplog.at_level(logging.WARNING):
        dataset = read_dataset(data, "voc")
    assert len(dataset) == 1 and dataset.licence == ""
    assert f"{tmp_path / 'LICENSE'}: licence file is not UTF-8 text" in caplog.text


def test_utf8_with_a_byte_order_mark_still_reads(tmp_path: Path) -> None:
    data, file = BUILDERS["points"](tmp_path)
    file.write_bytes(b"\xef\xbb\xbf" + file.read_bytes())
    assert len(read_dataset(data, "points").images[0].cells) == 1
