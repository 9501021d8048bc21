"""Pascal VOC XML: one ``Annotations/<id>.xml`` per image, images in ``JPEGImages/``, split lists in
``ImageSets/Main/<split>.txt``.

Convention: VOC corners are 1-based (the top-left pixel is ``(1, 1)``), so every corner is moved by
one to cytolens' 0-based coordinates: ``x1 = xmin - 1``, ``x2 = xmax - 1`` and likewise for y; a box
with ``xmin == xmax`` has zero size (BCCD holds two, which are skipped). Writing adds the one back
(integers stay integers; fractional coordinates are written as decimals).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import DataError
from cytolens.io.atomic import write_text
from cytolens.io.images import IMAGE_SUFFIXES, image_size
from cytolens.io.licence import read_licence
from cytolens.io.registry import Capabilities
from cytolens.io.text import read_text
from cytolens.io.validation import ClassNames, check_number, clean_boxes, stated_size, text_number

CAPABILITIES = Capabilities(boxes=True)


def _number(node: ET.Element, tag: str, source: Path, where: str) -> float:
    """The finite number held by ``node``'s child ``tag``; ``where`` (``"object 2"``) is named in errors."""
    child = node.find(tag)
    if child is None or child.text is None:
        raise DataError(source, f"{where}: <{tag}> is missing")
    return check_number(text_number(child.text.strip()), f"{where}: <{tag}>", source)


def _find_image(root: Path, xml_root: ET.Element, stem: str) -> Path:
    name = xml_root.findtext("filename")
    folder = root / "JPEGImages"
    if name and (folder / name).is_file():
        return folder / name
    for suffix in IMAGE_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return folder / (name or f"{stem}.jpg")


def read_annotation(xml_path: Path, root: Path, names: ClassNames) -> AnnotatedImage:
    """Read one VOC XML file."""
    try:
        xml_root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as error:
        raise DataError(xml_path, f"cannot parse XML ({error})") from None
    image_path = _find_image(root, xml_root, xml_path.stem)
    texts = [(xml_root.findtext(f"size/{tag}") or "").strip() or None for tag in ("width", "height")]
    size = stated_size((text_number(texts[0]), text_number(texts[1])), ("<size><width>", "<size><height>"), xml_path)
    width, height = size or image_size(image_path)
    boxes, labels = [], []
    for number, obj in enumerate(xml_root.iter("object"), start=1):
        where = f"object {number}"
        box = obj.find("bndbox")
        if box is None:
            raise DataError(xml_path, f"{where}: <object> without <bndbox>")
        corners = [_number(box, tag, xml_path, where) for tag in ("xmin", "ymin", "xmax", "ymax")]
        boxes.append([value - 1 for value in corners])
        labels.append(names.index((obj.findtext("name") or "").strip(), xml_path, where))
    clipped, kept = clean_boxes(np.array(boxes), width, height, xml_path)
    cells = Cells(boxes=clipped, labels=labels).select(kept)
    return AnnotatedImage(image_path, width, height, xml_path.stem, cells=cells)


def read(path: Path, classes: list[str] | None = None) -> Dataset:
    """Read a VOC folder (the one holding ``Annotations/``) with its ``ImageSets/Main`` split lists.

    Raises:
        DataError: If ``Annotations/`` is missing or a file is malformed.

    """
    annotations = path / "Annotations"
    if not annotations.is_dir():
        raise DataError(path, "not a Pascal VOC folder (no Annotations/ inside)")
    names = ClassNames(classes)
    images = [read_annotation(xml, path, names) for xml in sorted(annotations.glob("*.xml"))]
    if not images:
        raise DataError(annotations, "no .xml annotation files")
    splits = {}
    for split_file in sorted((path / "ImageSets" / "Main").glob("*.txt")):
        lines = [line.split() for line in read_text(split_file, "split list").splitlines() if line.strip()]
        if "_" in split_file.stem and lines and len(lines[0]) == 2:
            continue  # per-class lists (``<class>_<split>.txt``: id and flag) are not splits
        splits[split_file.stem] = [fields[0] for fields in lines]
    return Dataset(names.names, images, splits, path.name, read_licence(path))


def _coord(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def to_xml(image: AnnotatedImage, classes: list[str]) -> str:
    """The VOC XML text for one image."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = image.path.name
    size = ET.SubElement(root, "size")
    for tag, value in (("width", image.width), ("height", image.height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    cells = image.cells.box_cells()
    for box, label in zip(cells.boxes, cells.labels, strict=True):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = classes[label]
        ET.SubElement(obj, "difficult").text = "0"
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box + 1, strict=True):
            ET.SubElement(bndbox, tag).text = _coord(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def write(dataset: Dataset, out: Path) -> None:
    """Write ``Annotations/*.xml`` and ``ImageSets/Main/*.txt`` under ``out``.

    Images are not copied; each XML names its image file, which is expected in ``out/JPEGImages``.
    """
    for image in dataset.images:
        write_text(out / "Annotations" / f"{image.image_id}.xml", to_xml(image, dataset.classes))
    for split, ids in dataset.splits.items():
        write_text(out / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{key}\n" for key in ids))
