"""Label Studio JSON: a list of tasks, as Label Studio exports and imports them (``tasks.json``).

Each task is ``{"data": {"image": path}, "annotations" | "predictions": [{"result": [...]}]}``;
each result is a region with ``original_width``/``original_height`` and a ``value`` in **percent
of the image size**, measured from the image's top-left corner: a ``rectanglelabels`` region has
its top-left corner ``x, y`` and its ``width, height``; a ``keypointlabels`` region its ``x, y``.
So ``x_pixels = x / 100 * width``, the same origin as cytolens.

Writing puts ground truth in ``annotations`` and, for a dataset with scores, predictions in
``predictions`` (model version ``cytolens <version>``, a per-region ``score`` and the task
``score``: the mean object score, or a score given per image, as ``cytolens rank`` gives its ranking score so
that Label Studio sorts the tasks by it). Regions use the control names :data:`BOX_CONTROL` and
:data:`POINT_CONTROL` on the image object :data:`IMAGE_OBJECT`, so the labelling config must use
``<RectangleLabels name="label" toName="image">`` and ``<KeyPointLabels name="point" toName="image">``.
An image inside the JSON file's folder is named by its path relative to that folder, any other by
its absolute path; Label Studio serves neither. Given the folder Label Studio serves local files from
(its ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``; the writer takes that variable from the environment
when it is set), every image is named by the URL Label Studio serves it at,
``/data/local-files/?d=<path relative to that folder>`` (see Label Studio's "Local storage" guide: it
needs ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and a local storage on a folder holding the
images; the tasks are then imported as they are). Label Studio cannot hold unclassified points.
:func:`labelling_config` writes the labelling config the tasks need.

Reading takes a task file, or a folder holding ``tasks.json``. Per task it reads the first
annotation that was not cancelled, or else the first prediction. ``rectanglelabels`` regions
(rotated ones by the bounding box of the rotated rectangle) and ``polygonlabels`` regions (by
their bounding box) become boxes, ``keypointlabels`` regions points, each with the first of its
labels; other region types are skipped with a warning. The image path is taken relative to the
JSON file (a ``/data/local-files/?d=`` URL by its ``d`` path, relative to the document root when
``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` is set, else to the JSON file); when absent there, the file
of that name beside the JSON or in its ``images/`` folder is used. The image size is read from the image,
or else from the regions' ``original_width``/``original_height``.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, quote, urlparse
from xml.sax.saxutils import quoteattr

import numpy as np

from cytolens._version import __version__
from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.errors import DataError
from cytolens.io.images import image_size
from cytolens.io.json_files import read_json, write_json
from cytolens.io.objects import ObjectList
from cytolens.io.paths import output_file, portable_path, resolve_path
from cytolens.io.registry import Capabilities
from cytolens.io.validation import ClassNames, check_number, stated_size

CAPABILITIES = Capabilities(boxes=True, points=True, scores=True)

BOX_CONTROL = "label"
"""``from_name`` of rectangle regions: the name of the ``<RectangleLabels>`` control."""
POINT_CONTROL = "point"
"""``from_name`` of keypoint regions: the name of the ``<KeyPointLabels>`` control."""
IMAGE_OBJECT = "image"
"""``to_name`` of every region: the name of the ``<Image>`` object."""
POINT_WIDTH = 0.5
"""Drawn size of a written keypoint, in percent of the image width."""
TASKS_FILE = "tasks.json"
"""The task file written into (and read from) a folder."""
LOCAL_FILES_URL = "/data/local-files/?d="
"""Start of the URL at which Label Studio serves a file of its local-files document root (then its relative path)."""
DOCUMENT_ROOT_VARIABLE = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
"""The environment variable naming the folder Label Studio serves local files from."""
_LABELLED = ("rectanglelabels", "keypointlabels", "polygonlabels")
"""Region types read; each holds its labels under its own type name."""

log = logging.getLogger(__name__)


def _region(image: AnnotatedImage, kind: str, value: dict[str, Any], score: float | None) -> dict[str, Any]:
    region: dict[str, Any] = {
        "id": uuid.uuid4().hex[:10],
        "type": kind,
        "from_name": BOX_CONTROL if kind == "rectanglelabels" else POINT_CONTROL,
        "to_name": IMAGE_OBJECT,
        "original_width": image.width,
        "original_height": image.height,
        "image_rotation": 0,
        "value": value,
    }
    if score is not None:
        region["score"] = float(score)
    return region


def _regions(image: AnnotatedImage, classes: Sequence[str]) -> list[dict[str, Any]]:
    """The Label Studio regions of an image's cells, in the record's order: a box as a rectangle, else a keypoint."""
    cells, boxed = image.cells, image.cells.has_box
    if (cells.labels == UNCLASSIFIED).any():
        raise ValueError(f"{image.image_id}: Label Studio cannot hold unclassified points")
    scale = np.array([100.0 / image.width, 100.0 / image.height])
    scores = np.full(len(cells), np.nan) if cells.scores is None else cells.scores
    regions = []
    for i, (centre, label, score) in enumerate(zip(cells.centres, cells.labels, scores, strict=True)):
        score = None if np.isnan(score) else score
        if boxed[i]:
            box = cells.boxes[i]
            x, y, w, h = (float(v) for v in (*(box[:2] * scale), *((box[2:] - box[:2]) * scale)))
            value = {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [classes[label]]}
            regions.append(_region(image, "rectanglelabels", value, score))
        else:
            x, y = centre * scale
            value = {"x": float(x), "y": float(y), "width": POINT_WIDTH, "keypointlabels": [classes[label]]}
            regions.append(_region(image, "keypointlabels", value, score))
    return regions


def _mean_score(image: AnnotatedImage) -> float | None:
    scores = image.cells.scores
    scored = np.zeros(0) if scores is None else scores[~np.isnan(scores)]
    return float(scored.mean()) if len(scored) else None


def document_root() -> Path | None:
    """The folder Label Studio serves local files from, as the environment names it (``None`` when unset)."""
    value = os.environ.get(DOCUMENT_ROOT_VARIABLE, "").strip()
    return Path(value) if value else None


def local_files_url(path: Path, root: Path) -> str:
    """The URL at which Label Studio serves image ``path`` from its local-files document ``root``.

    Raises:
        DataError: If ``path`` does not lie inside ``root``.

    Examples:
        >>> local_files_url(Path("/data/slides/a 1.jpg"), Path("/data"))
        '/data/local-files/?d=slides/a%201.jpg'

    """
    path, root = Path(path).absolute(), Path(root).absolute()
    if not path.is_relative_to(root):
        raise DataError(path, f"lies outside the folder Label Studio serves local files from ({root}), so Label "
                              f"Studio cannot show it; choose a folder that holds the images")
    return LOCAL_FILES_URL + quote(path.relative_to(root).as_posix())


def to_task(
    image: AnnotatedImage,
    classes: Sequence[str],
    score: float | None = None,
    relative_to: Path | None = None,
    served_from: Path | None = None,
) -> dict[str, Any]:
    """The Label Studio task of one image.

    Args:
        image: The annotated (or predicted) image.
        classes: Class names indexed by the image's labels.
        score: The task score (for example an active-learning priority); defaults, for an image
            with scores, to the mean object score. A task with a score or object scores is written
            as a prediction, otherwise as an annotation.
        relative_to: The folder of the task file; an image inside it is named by its path relative
            to it, any other by its absolute path. ``None`` writes the path as it is.
        served_from: Label Studio's local-files document root: the image is named by the URL Label
            Studio serves it at (see :func:`local_files_url`), instead of its path.

    Returns:
        A JSON-serialisable task.

    Raises:
        ValueError: If the image holds unclassified points.
        DataError: If the image lies outside ``served_from``.

    """
    if served_from is not None:
        path = local_files_url(image.path, served_from)
    else:
        path = portable_path(image.path, relative_to) if relative_to is not None else image.path.as_posix()
    entry: dict[str, Any] = {"result": _regions(image, classes)}
    if score is None and image.cells.scores is None:
        return {"data": {"image": path}, "annotations": [entry]}
    entry["model_version"] = f"cytolens {__version__}"
    entry["score"] = float(score) if score is not None else _mean_score(image)
    return {"data": {"image": path}, "predictions": [entry]}


def labelling_config(classes: Sequence[str]) -> str:
    """The Label Studio labelling config (XML) that the written tasks fit: boxes and key points of ``classes``."""
    labels = "".join(f"\n    <Label value={quoteattr(name)}/>" for name in classes)
    return (
        f'<View>\n  <Image name="{IMAGE_OBJECT}" value="$image" zoom="true"/>\n'
        f'  <RectangleLabels name="{BOX_CONTROL}" toName="{IMAGE_OBJECT}">{labels}\n  </RectangleLabels>\n'
        f'  <KeyPointLabels name="{POINT_CONTROL}" toName="{IMAGE_OBJECT}">{labels}\n  </KeyPointLabels>\n</View>\n'
    )


def write(
    dataset: Dataset, out: Path, served_from: Path | None = None, scores: Mapping[str, float] | None = None
) -> None:
    """Write all images as tasks to ``out`` (a ``.json`` file, or a folder that gets ``tasks.json``).

    Args:
        dataset: The images.
        out: The task file, or its folder.
        served_from: Label Studio's local-files document root, to name images by the URLs Label Studio
            serves them at (default: ``$LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` when set, else images
            are named by their paths).
        scores: A task score per image id (``cytolens rank``'s ranking score: Label Studio sorts tasks by their
            prediction score); an image not named takes its mean object score (see :func:`to_task`).

    Raises:
        DataError: If an image lies outside ``served_from``.

    """
    file = output_file(out, ".json", TASKS_FILE)
    root = served_from if served_from is not None else document_root()
    scores = scores or {}
    tasks = [
        to_task(image, dataset.classes, scores.get(image.image_id), relative_to=file.parent, served_from=root)
        for image in dataset.images
    ]
    write_json(file, tasks, indent=1)


def _image_reference(task: Mapping[str, Any], source: Path) -> tuple[str, bool]:
    """The image a task names, and whether it names it by a local-files URL (then by the URL's ``d`` path)."""
    data = task.get("data")
    reference = data.get("image") if isinstance(data, Mapping) else None
    if not isinstance(reference, str) or not reference:
        raise DataError(source, f"task {task.get('id', '?')} has no data.image")
    parsed = urlparse(reference)
    if parsed.path == "/data/local-files/" and "d" in parse_qs(parsed.query):
        return parse_qs(parsed.query)["d"][0], True
    return reference, False


def _find_image(reference: str, folder: Path, served: bool = False) -> Path:
    """The image file of a task's reference: relative to the task file's folder (a served one first to the
    local-files document root, when set), else by its name there.
    """
    root = document_root() if served else None
    found = resolve_path(reference, *([root] if root is not None else []), folder)
    if found.is_file():
        return found
    by_name = resolve_path(PurePosixPath(urlparse(reference).path).name, folder, folder / "images")
    return by_name if by_name.is_file() else found


def _objects(task: Mapping[str, Any], key: str, source: Path, where: str) -> list[Mapping[str, Any]]:
    """The task's ``annotations`` or ``predictions``: a list of objects (absent: none)."""
    entries = task.get(key) or []
    if not isinstance(entries, list) or not all(isinstance(entry, Mapping) for entry in entries):
        raise DataError(source, f"{where}: '{key}' is not a list of objects")
    return entries


def _task_regions(task: Mapping[str, Any], source: Path, where: str) -> list[Mapping[str, Any]]:
    """The regions of the first annotation not cancelled, else of the first prediction, else none."""
    annotations = [a for a in _objects(task, "annotations", source, where) if not a.get("was_cancelled")]
    entry = next(iter(annotations or _objects(task, "predictions", source, where)), {})
    regions = entry.get("result") or []
    if not isinstance(regions, list) or not all(isinstance(region, Mapping) for region in regions):
        raise DataError(source, f"{where}: 'result' is not a list of region objects")
    return regions


def _percent(value: Mapping[str, Any], keys: Sequence[str], source: Path, where: str) -> np.ndarray:
    return np.array([check_number(value.get(key), f"{where}: value {key!r}", source) for key in keys]) / 100.0


def _rectangle(value: Mapping[str, Any], width: int, height: int, source: Path, where: str) -> list[float]:
    """The pixel bounding box of a (possibly rotated) rectangle region."""
    x, y, w, h = _percent(value, ("x", "y", "width", "height"), source, where) * [width, height, width, height]
    degrees = check_number(value.get("rotation") or 0, f"{where}: value 'rotation'", source)
    angle = np.deg2rad(degrees)  # clockwise on screen, about the top-left corner
    corners = np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    xy = corners @ rotation.T + [x, y]
    return [*xy.min(axis=0), *xy.max(axis=0)]


def _polygon_box(value: Mapping[str, Any], width: int, height: int, source: Path, where: str) -> list[float]:
    """The pixel bounding box of a polygon region."""
    points = value.get("points")
    if not isinstance(points, list) or not points or not all(isinstance(p, list) and len(p) == 2 for p in points):
        raise DataError(source, f"{where}: polygon 'points' is not a list of [x, y]: {str(points)[:40]!r}")
    xy = np.array([[check_number(v, f"{where}: polygon point", source) for v in point] for point in points])
    xy = xy / 100.0 * [width, height]
    return [*xy.min(axis=0), *xy.max(axis=0)]


def _region_score(region: Mapping[str, Any], source: Path, where: str) -> float | None:
    score = region.get("score")
    return None if score is None else check_number(score, f"{where}: score", source)


def read_task(
    task: Mapping[str, Any], source: Path, names: ClassNames, skipped: Counter[str], number: int = 1
) -> AnnotatedImage:
    """Read task ``number`` (from 1, named in errors) of the task file ``source``, counting skipped regions."""
    where = f"task {number}"
    reference, served = _image_reference(task, source)
    image_path = _find_image(reference, source.parent, served)
    regions = _task_regions(task, source, where)
    keys = ("original_width", "original_height")
    stated = stated_size(
        tuple(regions[0].get(key) for key in keys) if regions else (None, None),
        tuple(f"{where} region 1: {key!r}" for key in keys), source,
    )
    if image_path.is_file():
        width, height = image_size(image_path)
    elif stated is not None:
        width, height = stated
    else:
        raise DataError(source, f"{where}: image {image_path} not found and its size is not stated")
    objects = ObjectList(source)
    for index, region in enumerate(regions, start=1):
        kind, value = region.get("type"), region.get("value")
        labels = value.get(kind) if kind in _LABELLED and isinstance(value, Mapping) else None
        if not labels or not isinstance(labels, list):
            skipped[f"{kind} regions" if kind not in _LABELLED else f"{kind} regions without a label"] += 1
            continue
        at = f"{where} region {index}"
        label, score = names.index(labels[0], source, at), _region_score(region, source, at)
        if kind == "rectanglelabels":
            objects.add_box(_rectangle(value, width, height, source, at), label, score)
        elif kind == "keypointlabels":
            objects.add_point(_percent(value, ("x", "y"), source, at) * [width, height], label, score)
        else:
            objects.add_box(_polygon_box(value, width, height, source, at), label, score)
    return objects.to_image(image_path, width, height)


def read(path: Path, classes: list[str] | None = None) -> Dataset:
    """Read a Label Studio task file (or a folder holding ``tasks.json``).

    Raises:
        DataError: If the file is missing or malformed, or two tasks name images with the same stem.

    """
    file = output_file(path, ".json", TASKS_FILE)
    tasks = read_json(file, "Label Studio JSON file")
    tasks = [tasks] if isinstance(tasks, dict) else tasks
    if not isinstance(tasks, list) or not all(isinstance(task, Mapping) for task in tasks):
        raise DataError(file, "not a Label Studio task list (expected a JSON list of tasks)")
    names = ClassNames(classes)
    skipped: Counter[str] = Counter()
    images = [read_task(task, file, names, skipped, number) for number, task in enumerate(tasks, start=1)]
    for what, count in skipped.items():
        log.warning("%s: skipped %d %s", file, count, what)
    repeated = [key for key, count in Counter(image.image_id for image in images).items() if count > 1]
    if repeated:
        raise DataError(file, f"several tasks name images {', '.join(repeated[:5])}")
    return Dataset(names.names, images, {}, file.parent.name if file.name == TASKS_FILE else file.stem)
