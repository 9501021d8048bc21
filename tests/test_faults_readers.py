"""Fault class: annotation readers given wrong numbers, wrong types and unusable class names.

Every reader passes numbers through ``check_number`` and class names through ``ClassNames``, so a
NaN, an infinity, a string, a list or a null where a number belongs, or a class name that is a number,
blank or holds a control character, ends ``cytolens stats`` with one line naming the file (and the
object) instead of a traceback, a silently dropped object or a new class. Writers never write what
they cannot write faithfully. All fixtures are generated in ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
import tifffile
import yaml
from typer.testing import CliRunner

from cytolens.cli.main import app
from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import CytolensError, DataError
from cytolens.io import paths
from cytolens.io.json_files import write_json
from cytolens.io.registry import FORMATS, format_module, read_dataset, write_dataset
from cytolens.io.validation import ClassNames, check_number
from helpers import write_image

# Small valid datasets, one per format, with the parts the faults replace as keyword arguments.
# Each returns the path to give ``--data`` and the file a fault in it must be reported against.


def voc_dataset(root: Path, width: str = "64", xmin: str = "10", name: str = "RBC") -> tuple[Path, Path]:
    write_image(root / "JPEGImages" / "a.jpg")
    xml = root / "Annotations" / "a.xml"
    xml.parent.mkdir(parents=True)
    xml.write_text(
        f"<annotation><filename>a.jpg</filename><size><width>{width}</width><height>48</height></size>"
        f"<object><name>{name}</name><bndbox><xmin>{xmin}</xmin><ymin>5</ymin><xmax>20</xmax><ymax>15</ymax>"
        "</bndbox></object></annotation>"
    )
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    return root, xml


def coco_dataset(
    root: Path, image: dict | None = None, annotation: dict | None = None, category: dict | None = None,
    text: Callable[[str], str] = lambda text: text,
) -> tuple[Path, Path]:
    write_image(root / "a.png")
    content = {
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48, **(image or {})}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10], **(annotation or {})}],
        "categories": [{"id": 1, "name": "RBC", **(category or {})}],
    }
    path = root / "annotations.json"
    path.write_text(text(json.dumps(content)))
    return root, path


def yolo_dataset(root: Path, label: str = "0 0.5 0.5 0.2 0.2\n", names: str = "[RBC]") -> tuple[Path, Path]:
    write_image(root / "images" / "train" / "a.png")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text(label)
    (root / "data.yaml").write_text(f"names: {names}\ntrain: images/train\nval: images/train\n")
    return root, root / "labels" / "train" / "a.txt"


def points_dataset(root: Path, row: str = "a.png,10,10,RBC", header: str = "image,x,y,class") -> tuple[Path, Path]:
    write_image(root / "a.png")
    path = root / "points.csv"
    path.write_text(f"{header}\n{row}\n")
    return root, path


def chula_dataset(root: Path, label: str = "10 10 0\n") -> tuple[Path, Path]:
    write_image(root / "Dataset" / "1.jpg")
    (root / "Label").mkdir()
    (root / "Label" / "1.txt").write_text(label)
    return root, root / "Label" / "1.txt"


def crchisto_dataset(root: Path, detection: Any = ((10.0, 10.0),)) -> tuple[Path, Path]:
    folder = root / "img1"
    write_image(folder / "img1.png")
    scipy.io.savemat(folder / "img1_detection.mat", {"detection": np.array(detection)})
    for name in ("epithelial", "fibroblast", "inflammatory", "others"):
        scipy.io.savemat(folder / f"img1_{name}.mat", {"detection": np.zeros((0, 2))})
    return root, folder / "img1_detection.mat"


def masks_dataset(root: Path, bad_value: float = 1.0) -> tuple[Path, Path]:
    write_image(root / "images" / "a.png", 8, 8)
    mask = np.zeros((8, 8), np.float32)
    mask[1:4, 1:4] = 1
    mask[6, 6] = bad_value
    (root / "masks").mkdir()
    tifffile.imwrite(root / "masks" / "a.tif", mask)
    return root, root / "masks" / "a.tif"


def point_feature(coordinates: Any = (5, 7), properties: dict | None = None) -> dict:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": list(coordinates)},
            "properties": properties or {}}


def geojson_dataset(
    root: Path, features: Any = None, text: Callable[[str], str] = lambda text: text
) -> tuple[Path, Path]:
    write_image(root / "a.png")
    path = root / "a.geojson"
    collection = {"type": "FeatureCollection", "features": [point_feature()] if features is None else features}
    path.write_text(text(json.dumps(collection)))
    return root, path


def keypoint(value: dict | None = None, **region: Any) -> dict:
    return {"type": "keypointlabels", "original_width": 64, "original_height": 48,
            "value": {"x": 10, "y": 10, "keypointlabels": ["RBC"], **(value or {})}, **region}


def label_studio_dataset(
    root: Path, task: dict | None = None, text: Callable[[str], str] = lambda text: text
) -> tuple[Path, Path]:
    write_image(root / "a.png")
    path = root / "tasks.json"
    task = {"data": {"image": "a.png"}, "annotations": [{"result": [keypoint()]}]} if task is None else task
    path.write_text(text(json.dumps([{"data": {"image": "a.png"}, **task}])))
    return root, path


def folders_dataset(root: Path, class_name: str = "RBC") -> tuple[Path, Path]:
    write_image(root / class_name / "a.png")
    return root, root / class_name


BUILDERS: dict[str, Callable[..., tuple[Path, Path]]] = {
    "voc": voc_dataset, "coco": coco_dataset, "yolo": yolo_dataset, "points": points_dataset,
    "chula": chula_dataset, "crchisto": crchisto_dataset, "folders": folders_dataset, "masks": masks_dataset,
    "geojson": geojson_dataset, "label-studio": label_studio_dataset,
}
"""Format name to its dataset builder."""


def stats(data: Path, fmt: str) -> Any:
    return CliRunner().invoke(app, ["stats", "--data", str(data), "--format", fmt, "--json"])


def assert_one_line_error(result: Any, file: Path, *fragments: str) -> str:
    """Exit 1 and one stderr line ``error: <file>: ...`` holding ``fragments``; no traceback. Returns the line."""
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: {file}: "), errors[0]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert "Traceback" not in result.output
    return errors[0]


def test_every_format_has_a_builder_and_reads_clean(tmp_path: Path) -> None:
    assert set(BUILDERS) == set(FORMATS)
    for fmt, build in BUILDERS.items():
        data, _ = build(tmp_path / fmt)
        assert len(read_dataset(data, fmt)) == 1


NOT_NUMBERS = [
    ("voc width inf", "voc", {"width": "inf"}, "<size><width> must be a finite number, not inf"),
    ("voc width 1e400", "voc", {"width": "1e400"}, "<size><width> must be a finite number"),
    ("voc width text", "voc", {"width": "abc"}, "<size><width> must be a number, not 'abc'"),
    ("voc corner nan", "voc", {"xmin": "nan"}, "object 1: <xmin> must be a finite number, not nan"),
    ("coco width list", "coco", {"image": {"width": [64]}}, "image 'a.png': 'width' must be a number, not [64]"),
    ("coco width text", "coco", {"image": {"width": "64"}}, "'width' must be a number, not '64'"),
    ("coco width negative", "coco", {"image": {"width": -64}}, "'width' must lie in [0, inf], not -64"),
    ("coco image id list", "coco", {"image": {"id": [1]}}, "images entry 1: 'id' must be an integer, not [1]"),
    ("coco annotation image id list", "coco", {"annotation": {"image_id": [1]}}, "unknown image_id [1]"),
    ("coco null score", "coco", {"annotation": {"score": None}}, "annotation 1: 'score' must be a number, not None"),
    ("coco bbox bool", "coco", {"annotation": {"bbox": [1, True, 2, 2]}}, "'bbox' value must be a number, not True"),
    ("yolo nan", "yolo", {"label": "0 nan 0.5 0.2 0.2\n"}, "line 1: cx must be a finite number, not nan"),
    ("yolo score inf", "yolo", {"label": "0 0.5 0.5 0.2 0.2 inf\n"}, "line 1: score must be a finite number"),
    ("yolo class fraction", "yolo", {"label": "0.5 0.5 0.5 0.2 0.2\n"}, "line 1: class must be a whole number"),
    ("points x nan", "points", {"row": "a.png,nan,10,RBC"}, "line 2: x must be a finite number, not nan"),
    ("points score nan", "points", {"row": "a.png,1,2,RBC,nan", "header": "image,x,y,class,score"},
     "line 2: score must be a finite number, not nan"),
    ("chula fraction", "chula", {"label": "10 2.5 0\n"}, "line 1: y must be a whole number, not 2.5"),
    ("chula class", "chula", {"label": "10 2 13\n"}, "line 1: class must lie in [0, 12], not 13"),
    ("crchisto nan", "crchisto", {"detection": [[np.nan, 10.0]]}, "'detection' row 1 must be a finite number"),
    ("crchisto inf", "crchisto", {"detection": [[1.0, 1.0], [np.inf, 10.0]]}, "'detection' row 2 must be a finite"),
    ("crchisto text", "crchisto", {"detection": [["ab", "cd"]]}, "'detection' row 1 must be a number, not 'ab'"),
    ("masks nan", "masks", {"bad_value": np.nan}, "mask row 7 must be a finite number, not nan"),
    ("geojson bool coordinate", "geojson", {"features": [point_feature((True, 7))]},
     "feature 1: coordinate must be a number, not True"),
    ("geojson text coordinate", "geojson", {"features": [point_feature(("5", 7))]},
     "feature 1: coordinate must be a number, not '5'"),
    ("geojson list score", "geojson", {"features": [point_feature(properties={"measurements": {"score": [1]}})]},
     "feature 1: score measurement must be a number, not [1]"),
    ("label-studio text x", "label-studio", {"task": {"annotations": [{"result": [keypoint({"x": "abc"})]}]}},
     "task 1 region 1: value 'x' must be a number, not 'abc'"),
    ("label-studio width list", "label-studio",
     {"task": {"annotations": [{"result": [keypoint(original_width=[64])]}]}},
     "task 1 region 1: 'original_width' must be a number, not [64]"),
    ("label-studio score text", "label-studio", {"task": {"predictions": [{"result": [keypoint(score="hi")]}]}},
     "task 1 region 1: score must be a number, not 'hi'"),
    ("label-studio rotation text", "label-studio", {"task": {"annotations": [{"result": [
        {"type": "rectanglelabels", "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rotation": "x",
                                              "rectanglelabels": ["RBC"]}}]}]}},
     "task 1 region 1: value 'rotation' must be a number, not 'x'"),
    ("label-studio polygon null", "label-studio", {"task": {"annotations": [{"result": [
        {"type": "polygonlabels", "value": {"points": [[1, None]], "polygonlabels": ["RBC"]}}]}]}},
     "task 1 region 1: polygon point must be a number, not None"),
]


@pytest.mark.parametrize(("fmt", "faults", "problem"), [case[1:] for case in NOT_NUMBERS],
                         ids=[case[0] for case in NOT_NUMBERS])
def test_a_value_that_is_not_a_finite_number_is_one_line_naming_the_file(
    tmp_path: Path, fmt: str, faults: dict, problem: str
) -> None:
    data, file = BUILDERS[fmt](tmp_path, **faults)
    assert_one_line_error(stats(data, fmt), file, problem)


NOT_OBJECTS = [
    ("coco file name a number", "coco", {"image": {"file_name": 5}},
     "images entry 1: 'file_name' must be a file name, not 5"),
    ("geojson features a mapping", "geojson", {"features": {"a": 1}}, "'features' is not a list"),
    ("geojson feature a string", "geojson", {"features": ["abc"]}, "feature 1 is not an object: 'abc'"),
    ("geojson class names numbers", "geojson",
     {"features": [point_feature(properties={"classification": {"names": [1, 2]}})]},
     "feature 1: classification 'names' must be a list of text"),
    ("label-studio annotations of strings", "label-studio", {"task": {"annotations": ["x"]}},
     "task 1: 'annotations' is not a list of objects"),
    ("label-studio predictions a string", "label-studio", {"task": {"predictions": "x"}},
     "task 1: 'predictions' is not a list of objects"),
    ("label-studio result a number", "label-studio", {"task": {"annotations": [{"result": 5}]}},
     "task 1: 'result' is not a list of region objects"),
]


@pytest.mark.parametrize(("fmt", "faults", "problem"), [case[1:] for case in NOT_OBJECTS],
                         ids=[case[0] for case in NOT_OBJECTS])
def test_a_list_or_object_of_the_wrong_type_is_one_line_naming_the_file(
    tmp_path: Path, fmt: str, faults: dict, problem: str
) -> None:
    data, file = BUILDERS[fmt](tmp_path, **faults)
    assert_one_line_error(stats(data, fmt), file, problem)


def test_qupath_measurements_with_names_that_are_not_text_are_ignored(tmp_path: Path) -> None:
    measurements = [{"name": [1], "value": 2}, {"name": "score", "value": 0.5}]
    data, _ = geojson_dataset(tmp_path, [point_feature(properties={"measurements": measurements})])
    assert read_dataset(data, "geojson").images[0].cells.scores.tolist() == [0.5]


def _name_in(fmt: str, name: Any) -> dict:
    """The builder arguments that put class name ``name`` into a dataset of format ``fmt``."""
    return {
        "voc": lambda: {"name": name},
        "coco": lambda: {"category": {"name": name}},
        "yolo": lambda: {"names": json.dumps([name])},  # YAML reads JSON: "\u0000" is a NUL character
        "points": lambda: {"row": f"a.png,10,10,{name}"},
        "folders": lambda: {"class_name": name},
        "geojson": lambda: {"features": [point_feature(properties={"classification": {"name": name}})]},
        "label-studio": lambda: {"task": {"annotations": [{"result": [keypoint({"keypointlabels": [name]})]}]}},
    }[fmt]()


BAD_NAMES = [
    ("coco", "RBC\x00", "category 1: class name 'RBC\\x00' holds a control character (U+0000)"),
    ("geojson", "RBC\x00", "feature 1: class name 'RBC\\x00' holds a control character (U+0000)"),
    ("label-studio", "RBC\x00", "task 1 region 1: class name 'RBC\\x00' holds a control character (U+0000)"),
    ("yolo", "RBC\x00", "names[0]: class name 'RBC\\x00' holds a control character (U+0000)"),
    ("points", "R\x01BC", "line 2: class name 'R\\x01BC' holds a control character (U+0001)"),
    ("voc", "R\tBC", "object 1: class name 'R\\tBC' holds a control character (U+0009)"),
    ("folders", "R\x1bBC", "class name 'R\\x1bBC' holds a control character (U+001B)"),
    ("coco", 3, "category 1: class name must be text, not 3"),
    ("geojson", 3, "feature 1: class name must be text, not 3"),
    ("label-studio", 3, "task 1 region 1: class name must be text, not 3"),
    ("yolo", None, "names[0]: class name must be text, not None"),
    ("voc", "", "object 1: class name '' is empty"),
    ("coco", " ", "category 1: class name ' ' is empty"),
    ("label-studio", "\ud800", "class name '\\ud800' holds a control character (U+D800)"),
]


@pytest.mark.parametrize(("fmt", "name", "problem"), BAD_NAMES, ids=[f"{f}-{n!r}" for f, n, _ in BAD_NAMES])
def test_a_class_name_that_cannot_name_a_class_is_refused(tmp_path: Path, fmt: str, name: Any, problem: str) -> None:
    data, file = BUILDERS[fmt](tmp_path, **_name_in(fmt, name))
    assert_one_line_error(stats(data, fmt), data / "data.yaml" if fmt == "yolo" else file, problem)


def test_numeric_yaml_names_of_yolo_are_their_text(tmp_path: Path) -> None:
    data, _ = yolo_dataset(tmp_path, names="[1, 2]")
    assert read_dataset(data, "yolo").classes == ["1", "2"]


def test_class_names_checks_before_the_class_map() -> None:
    names = ClassNames(["RBC"])
    with pytest.raises(DataError, match=r"^f.json: line 3: class name 'RBC\\x00' holds a control character"):
        names.index("RBC\x00", "f.json", "line 3")
    with pytest.raises(DataError, match=r"^f.json: class 'WBC' is not in the class map \(RBC\)$"):
        names.index("WBC", "f.json")
    assert names.index("RBC", "f.json") == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (10**400, f"width must be a finite number, not 1{'0' * 36}..."),
        (np.float64("nan"), "width must be a finite number, not nan"),
        ("x" * 100, f"width must be a number, not '{'x' * 36}..."),
    ],
)
def test_check_number_takes_huge_integers_numpy_scalars_and_long_values(value: Any, message: str) -> None:
    with pytest.raises(CytolensError) as error:
        check_number(value, "width")
    assert str(error.value) == message


def test_check_number_returns_python_numbers() -> None:
    assert type(check_number(np.int64(5), "width", integer=True)) is int
    assert check_number(10**400, "count", integer=True) == 10**400


def test_a_nan_point_is_refused_by_the_reader_so_convert_writes_nothing(tmp_path: Path) -> None:
    data, file = points_dataset(tmp_path / "in", row="a.png,nan,10,normal cell")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["convert", "--data", str(data), "--format", "points", "--to", "chula",
                                      "--out", str(out)])
    assert_one_line_error(result, file, "line 2: x must be a finite number, not nan")
    assert not list(out.rglob("*.txt"))


@pytest.mark.parametrize("fmt", [name for name in FORMATS if hasattr(format_module(name), "write")])
def test_no_writer_writes_a_number_that_is_not_finite(tmp_path: Path, fmt: str) -> None:
    cells = Cells.concatenate([Cells(boxes=[[1, 1, 5, np.inf]], labels=[0]), Cells(centres=[[np.nan, 3]], labels=[0])])
    image = AnnotatedImage(tmp_path / "a.png", 64, 48, cells=cells, image_labels=[0])
    write_image(image.path)
    with pytest.raises(DataError, match=r"a.png: (box|point) 1 must be a finite number, not (inf|nan)"):
        write_dataset(Dataset(["normal cell"], [image]), tmp_path / "out", fmt)
    assert not (tmp_path / "out").exists()


def test_write_json_refuses_nan_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="out.json: cannot write NaN or infinity as JSON"):
        write_json(tmp_path / "out.json", {"score": float("nan")})
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("image_id", ["../escape", "/abs/a", "a/../../b"])
def test_an_image_id_leading_out_of_the_output_folder_is_refused(tmp_path: Path, image_id: str) -> None:
    image = AnnotatedImage(write_image(tmp_path / "a.png"), 64, 48, image_id)
    with pytest.raises(DataError, match="would be written outside the output folder"):
        write_dataset(Dataset(["RBC"], [image]), tmp_path / "out" / "deep", "voc")
    assert not (tmp_path / "out").exists()


def test_folders_writer_refuses_a_class_name_that_is_a_path(tmp_path: Path) -> None:
    image = AnnotatedImage(write_image(tmp_path / "a.png"), 64, 48, image_labels=[0])
    with pytest.raises(DataError, match="class name '../up' cannot be a folder name"):
        write_dataset(Dataset(["../up"], [image]), tmp_path / "out", "folders")


def test_a_yolo_image_that_is_a_broken_link_is_an_error(tmp_path: Path) -> None:
    data, _ = yolo_dataset(tmp_path)
    link = tmp_path / "images" / "train" / "b.png"
    link.symlink_to(tmp_path / "moved-away.png")
    assert_one_line_error(stats(data, "yolo"), link, "image file not found (broken symbolic link to")


def test_convert_to_yolo_hard_links_images_that_outlive_their_source(tmp_path: Path) -> None:
    data, _ = voc_dataset(tmp_path / "src")
    write_dataset(read_dataset(data, "voc"), tmp_path / "yolo", "yolo")
    placed = tmp_path / "yolo" / "images" / "train" / "a.jpg"
    assert not placed.is_symlink() and os.path.samefile(placed, data / "JPEGImages" / "a.jpg")
    shutil.rmtree(tmp_path / "src")
    back = read_dataset(tmp_path / "yolo", "yolo")
    assert len(back) == 1 and len(back.images[0].cells) == 1 and back.images[0].path.is_file()


def test_images_are_copied_where_hard_links_cannot_be_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(*_: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(paths.os, "link", no_links)
    data, _ = voc_dataset(tmp_path / "src")
    write_dataset(read_dataset(data, "voc"), tmp_path / "yolo", "yolo")
    placed, source = tmp_path / "yolo" / "images" / "train" / "a.jpg", data / "JPEGImages" / "a.jpg"
    assert not os.path.samefile(placed, source) and placed.read_bytes() == source.read_bytes()
    assert placed.stat().st_mtime == source.stat().st_mtime
    assert not [p for p in placed.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_an_image_id_in_two_yolo_splits_may_be_identical_copies(tmp_path: Path) -> None:
    data, _ = yolo_dataset(tmp_path)
    shutil.copytree(tmp_path / "images" / "train", tmp_path / "images" / "val")
    shutil.copytree(tmp_path / "labels" / "train", tmp_path / "labels" / "val")
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"names": ["RBC"], "train": "images/train",
                                                        "val": "images/val"}))
    assert read_dataset(data, "yolo").splits == {"train": ["a"], "val": ["a"]}
    write_image(tmp_path / "images" / "val" / "a.png", 32, 32)
    with pytest.raises(DataError, match="image id 'a' names two different files"):
        read_dataset(data, "yolo")
