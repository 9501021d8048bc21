"""COCO object-detection JSON: ``images``, ``annotations`` (boxes) and ``categories`` in one file.

Convention: a COCO ``bbox`` is ``[x, y, w, h]`` with ``(x, y)`` the top-left corner, measured from the
top-left corner of the image in pixels: the same origin as cytolens, so the only conversion is
``xyxy = [x, y, x + w, y + h]`` (and back). Categories are listed in the order of their ids; an
annotation with a ``score`` is a prediction (a COCO *results* entry). COCO holds no points and no
image-level labels.

Images are resolved relative to the JSON file's folder, then to an ``images/`` folder beside it. The
writer does not copy images: ``file_name`` is the image path relative to the JSON's folder when the
image lies inside it, otherwise absolute. Image ids in the file are integers ``1..N``; the cytolens
``image_id`` is the image's file stem, or the extra key ``cytolens_id`` of the image entry when it
differs from the stem (other COCO tools ignore extra keys).
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

import numpy as np

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.errors import DataError
from cytolens.io.images import image_size
from cytolens.io.json_files import read_json, write_json
from cytolens.io.paths import output_file, portable_path, resolve_path
from cytolens.io.registry import Capabilities
from cytolens.io.validation import ClassNames, check_number, clean_boxes, stated_size

log = logging.getLogger(__name__)

CAPABILITIES = Capabilities(boxes=True, scores=True)

ID_KEY = "cytolens_id"
"""Extra key of a COCO image entry holding the cytolens ``image_id`` when it is not the file stem."""


def _load(path: Path) -> dict:
    data = read_json(path, "COCO JSON file")
    if isinstance(data, list):
        raise DataError(path, "this is a COCO results list (no images or categories); give the dataset JSON")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(path, "not a COCO dataset (no 'images' list)")
    for key in ("images", "annotations", "categories"):
        entries = data.get(key, [])
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise DataError(path, f"'{key}' is not a list of objects")
        for number, entry in enumerate(entries, start=1):
            if not isinstance(entry.get("id"), int | str | None) or isinstance(entry.get("id"), bool):
                raise DataError(path, f"{key} entry {number}: 'id' must be an integer, not {entry.get('id')!r}")
    return data


def _category_indices(categories: list[dict], names: ClassNames, source: Path) -> dict[int, int]:
    """COCO category id to class index, taking categories in the order of their ids."""
    try:
        ordered = sorted(categories, key=lambda category: category["id"])
        return {category["id"]: names.index(category["name"], source, f"category {category['id']}")
                for category in ordered}
    except (KeyError, TypeError) as error:
        raise DataError(source, f"malformed category entry ({error.__class__.__name__}: {error})") from None


def _image_ids(entries: list[dict], source: Path) -> list[str]:
    """The cytolens ids of COCO image entries: ``cytolens_id``, else the file stem (the file name if stems clash)."""
    names = [entry.get("file_name") for entry in entries]
    for number, name in enumerate(names, start=1):
        if not isinstance(name, str) or not name:
            raise DataError(source, f"images entry {number}: 'file_name' must be a file name, not {name!r}")
    stems = [PurePosixPath(name).stem for name in names]
    fallback = stems if len(set(stems)) == len(stems) else [str(PurePosixPath(name).with_suffix("")) for name in names]
    ids = [str(entry.get(ID_KEY) or default) for entry, default in zip(entries, fallback, strict=True)]
    if len(set(ids)) != len(ids):
        raise DataError(source, "two image entries have the same file name")
    return ids


def _annotation_box(annotation: dict, source: Path) -> list[float]:
    bbox = annotation.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise DataError(source, f"annotation {annotation.get('id')}: 'bbox' is not [x, y, w, h]")
    x, y, w, h = (check_number(value, f"annotation {annotation.get('id')}: 'bbox' value", source) for value in bbox)
    return [x, y, x + w, y + h]


def _score(annotation: dict, source: Path) -> float:
    return check_number(annotation.get("score"), f"annotation {annotation.get('id')}: 'score'", source)


def read(path: Path, classes: list[str] | None = None) -> Dataset:
    """Read a COCO JSON file (or the ``annotations.json`` inside folder ``path``).

    Args:
        path: The JSON file, or a folder holding ``annotations.json``.
        classes: A fixed class order; a category name outside it is an error.

    Raises:
        DataError: If the file is missing or malformed, or refers to an unknown image or category.

    """
    path = path / "annotations.json" if path.is_dir() else path
    data = _load(path)
    folder = path.parent
    names = ClassNames(classes)
    category_index = _category_indices(data.get("categories", []), names, path)
    entries = data["images"]
    ids = _image_ids(entries, path)
    objects: dict[object, list[dict]] = {entry.get("id"): [] for entry in entries}
    for annotation in data.get("annotations", []):
        for key, known in (("image_id", objects), ("category_id", category_index)):
            if isinstance(annotation.get(key), list | dict) or annotation.get(key) not in known:
                raise DataError(path, f"annotation {annotation.get('id')} has unknown {key} {annotation.get(key)!r}")
        objects[annotation["image_id"]].append(annotation)
    scored = [("score" in annotation) for annotation in data.get("annotations", [])]
    if any(scored) and not all(scored):
        raise DataError(path, "some annotations have a 'score' and others do not")
    images = []
    for entry, image_id in zip(entries, ids, strict=True):
        image_path = resolve_path(entry["file_name"], folder, folder / "images")
        source = f"{path} (image {entry.get('file_name')})"
        keys = (f"image {entry['file_name']!r}: 'width'", f"image {entry['file_name']!r}: 'height'")
        width, height = stated_size((entry.get("width"), entry.get("height")), keys, path) or image_size(image_path)
        annotations = objects[entry.get("id")]
        boxes = np.array([_annotation_box(annotation, path) for annotation in annotations]).reshape(-1, 4)
        labels = np.array([category_index[annotation["category_id"]] for annotation in annotations], dtype=np.int64)
        clipped, kept = clean_boxes(boxes, width, height, source)
        scores = [_score(annotation, path) for annotation in annotations] if any(scored) else None
        cells = Cells(boxes=clipped, labels=labels, scores=scores).select(kept)
        images.append(AnnotatedImage(image_path, width, height, image_id, cells=cells))
    licences = data.get("licenses") or []
    licence = str(licences[0].get("name", "")) if licences and isinstance(licences[0], dict) else ""
    return Dataset(names.names, images, {}, path.stem, licence)


def image_numbers(dataset: Dataset) -> dict[str, int]:
    """The integer COCO id of each image: ``1..N`` in dataset order, by cytolens ``image_id``."""
    return {image.image_id: number for number, image in enumerate(dataset.images, start=1)}


def _bbox(box: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(value) for value in box)
    return [x1, y1, x2 - x1, y2 - y1]


def to_coco_dict(dataset: Dataset, root: Path | None = None) -> dict:
    """The COCO dataset dictionary of ``dataset`` (as :mod:`pycocotools` loads it).

    Args:
        dataset: The dataset; box scores, when present, are written as ``score``.
        root: The folder the JSON will be saved in; ``file_name`` is relative to it when the image
            lies inside, otherwise absolute. ``None`` writes bare file names.

    Returns:
        A dict with ``info``, ``licenses``, ``images`` (ids from :func:`image_numbers`),
        ``annotations`` (ids ``1..``) and ``categories`` (ids ``1..C`` in class order).

    """
    numbers = image_numbers(dataset)
    images, annotations = [], []
    for image in dataset.images:
        entry = {
            "id": numbers[image.image_id],
            "file_name": portable_path(image.path, root) if root is not None else image.path.name,
            "width": image.width,
            "height": image.height,
        }
        if image.image_id != image.path.stem:
            entry[ID_KEY] = image.image_id
        images.append(entry)
        cells = image.cells.box_cells()
        for i, (box, label) in enumerate(zip(cells.boxes, cells.labels, strict=True)):
            bbox = _bbox(box)
            annotation = {
                "id": len(annotations) + 1,
                "image_id": numbers[image.image_id],
                "category_id": int(label) + 1,
                "bbox": bbox,
                "area": bbox[2] * bbox[3],
                "iscrowd": 0,
            }
            if cells.scores is not None:
                annotation["score"] = float(cells.scores[i])
            annotations.append(annotation)
    return {
        "info": {"description": dataset.name},
        "licenses": [{"id": 1, "name": dataset.licence}] if dataset.licence else [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "cell"} for i, name in enumerate(dataset.classes)],
    }


def to_results(dataset: Dataset, numbers: dict[str, int] | None = None) -> list[dict]:
    """The COCO *results* list of the boxes in ``dataset`` (predictions), for ``COCO.loadRes``.

    Args:
        dataset: The predictions; category ids are class index + 1 (as in :func:`to_coco_dict`), so the
            classes must be ordered as in the ground truth. Boxes without scores get score 1.
        numbers: Integer COCO id of each ``image_id`` (from :func:`image_numbers` of the ground truth);
            defaults to the numbering of ``dataset`` itself.

    Raises:
        KeyError: If an image of ``dataset`` is missing from ``numbers``.

    """
    numbers = numbers if numbers is not None else image_numbers(dataset)
    results = []
    for image in dataset.images:
        cells = image.cells.box_cells()
        scores = cells.scores if cells.scores is not None else np.ones(len(cells))
        for box, label, score in zip(cells.boxes, cells.labels, scores, strict=True):
            results.append(
                {
                    "image_id": numbers[image.image_id],
                    "category_id": int(label) + 1,
                    "bbox": _bbox(box),
                    "score": float(score),
                }
            )
    return results


def write(dataset: Dataset, out: Path) -> None:
    """Write ``dataset`` as one COCO JSON file.

    Args:
        dataset: Boxes (and their scores when present) are written; images are not copied.
        out: The ``.json`` file; a folder (or a path without the ``.json`` suffix) gets ``annotations.json``.

    """
    out = output_file(out, ".json", "annotations.json")
    write_json(out, to_coco_dict(dataset, out.parent), indent=1)
