"""QuPath GeoJSON: one ``<image_id>.geojson`` per image, a ``FeatureCollection`` of detections.

Convention: QuPath's full-resolution pixel coordinates have their origin at the top-left corner of
the top-left pixel, x right and y down, exactly as cytolens, so coordinates pass unchanged.

Writing: a box becomes a ``Polygon`` (its closed five-vertex ring), a point a ``Point``; each
feature is a ``"detection"`` whose ``classification`` carries the class name and its palette colour
(:func:`cytolens.io.colors.class_color`); unclassified points have no ``classification``. A score
goes in ``measurements["score"]``, class probabilities in ``p_<class>`` and the record's extras under
their names (a prediction's). Images are not copied: the reader expects them beside the
``.geojson`` files or in an ``images/`` folder there.

Reading accepts a folder of ``.geojson`` files or one file, holding a ``FeatureCollection``, a
single ``Feature`` or (QuPath 0.2) a bare list of features. ``Polygon`` and ``MultiPolygon``
geometries become their bounding box, ``Point`` and ``MultiPoint`` points. Scores come from the
``score`` measurement, given as a mapping or as QuPath's list of ``{"name", "value"}``. Polygons
without a class and other geometry types (lines) are skipped with a warning, because a box needs a
class. The image of ``X.geojson`` is the file with stem ``X`` and an image suffix beside it or in
``images/`` beside it; its size is read from its header.
"""

from __future__ import annotations

import glob
import logging
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset
from cytolens.errors import DataError
from cytolens.io.colors import class_color
from cytolens.io.columns import probability_columns
from cytolens.io.images import IMAGE_SUFFIXES, image_size
from cytolens.io.json_files import read_json, write_json
from cytolens.io.objects import ObjectList
from cytolens.io.registry import Capabilities
from cytolens.io.validation import ClassNames, check_number

CAPABILITIES = Capabilities(boxes=True, points=True, unclassified_points=True, scores=True)

log = logging.getLogger(__name__)


def _box_polygon(box: np.ndarray) -> dict[str, Any]:
    x1, y1, x2, y2 = (float(value) for value in box)
    ring = [[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]
    return {"type": "Polygon", "coordinates": [ring]}


def _point(point: np.ndarray) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [float(point[0]), float(point[1])]}


def to_feature_collection(image: AnnotatedImage, classes: Sequence[str]) -> dict[str, Any]:
    """The QuPath GeoJSON ``FeatureCollection`` of one image's cells.

    Args:
        image: The annotated (or predicted) image.
        classes: Class names indexed by the image's labels.

    Returns:
        A JSON-serialisable mapping with one feature per cell, in the record's order: a box as a
        ``Polygon``, a cell without a box as a ``Point``. Its measurements are its score, its class
        probabilities (``p_<class>``) and its extras, when the record holds them.

    """
    cells, boxed = image.cells, image.cells.has_box
    measured: dict[str, np.ndarray] = {}
    if cells.probabilities is not None:
        measured = dict(zip(probability_columns(classes), cells.probabilities.T, strict=True))
    measured.update(cells.extras)
    features = []
    for i, (centre, label) in enumerate(zip(cells.centres, cells.labels, strict=True)):
        geometry = _box_polygon(cells.boxes[i]) if boxed[i] else _point(centre)
        properties: dict[str, Any] = {"objectType": "detection"}
        if label != UNCLASSIFIED:
            properties["classification"] = {"name": classes[label], "color": list(class_color(int(label)))}
        scored = cells.scores is not None and not np.isnan(cells.scores[i])
        measurements = {"score": float(cells.scores[i])} if scored else {}
        measurements.update({name: float(values[i]) for name, values in measured.items()})
        if measurements:
            properties["measurements"] = measurements
        features.append({"type": "Feature", "id": str(uuid.uuid4()), "geometry": geometry, "properties": properties})
    return {"type": "FeatureCollection", "features": features}


def write(dataset: Dataset, out: Path) -> None:
    """Write one ``<image_id>.geojson`` per image under ``out``."""
    for image in dataset.images:
        write_json(out / f"{image.image_id}.geojson", to_feature_collection(image, dataset.classes))


def _features(path: Path) -> list[Any]:
    """The features of a GeoJSON file, whichever of the accepted layouts it uses."""
    data = read_json(path, "GeoJSON file")
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        data = data.get("features") or []
        if not isinstance(data, list):
            raise DataError(path, "'features' is not a list")
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and data.get("type") == "Feature":
        return [data]
    raise DataError(path, "not GeoJSON: expected a FeatureCollection, a Feature or a list of features")


def _class_name(properties: Mapping[str, Any], source: Path, where: str) -> Any:
    """The class a feature names (``None`` for none); :class:`ClassNames` judges whether it can name a class."""
    classification = properties.get("classification")
    if isinstance(classification, str):
        return classification or None
    if not isinstance(classification, Mapping):
        return None
    if classification.get("name") not in (None, ""):
        return classification["name"]
    parts = classification.get("names") or []
    if not isinstance(parts, list) or not all(isinstance(part, str) for part in parts):
        raise DataError(source, f"{where}: classification 'names' must be a list of text, not {str(parts)[:40]!r}")
    return ": ".join(parts) or None


def _score(properties: Mapping[str, Any], source: Path, where: str) -> float | None:
    measurements = properties.get("measurements") or {}
    if isinstance(measurements, list):  # QuPath 0.2: [{"name": ..., "value": ...}, ...]
        items = [item for item in measurements if isinstance(item, Mapping) and isinstance(item.get("name"), str)]
        measurements = {item["name"]: item.get("value") for item in items}
    value = measurements.get("score") if isinstance(measurements, Mapping) else None
    return None if value is None else check_number(value, f"{where}: score measurement", source)


def _positions(coordinates: Any, source: Path, where: str) -> list[list[float]]:
    """The ``x, y`` positions in GeoJSON coordinates nested to any depth (point, ring, polygon, ...)."""
    if not isinstance(coordinates, list):
        raise DataError(source, f"{where}: malformed coordinates {str(coordinates)[:40]!r}")
    if coordinates and not isinstance(coordinates[0], list):
        if len(coordinates) < 2:
            raise DataError(source, f"{where}: malformed position {str(coordinates)[:40]!r}: no y")
        return [[check_number(value, f"{where}: coordinate", source) for value in coordinates[:2]]]
    return [position for item in coordinates for position in _positions(item, source, where)]


def _vertices(geometry: Mapping[str, Any], source: Path, where: str) -> np.ndarray:
    """All ``x, y`` vertices of a geometry as an ``(N, 2)`` array."""
    vertices = np.asarray(_positions(geometry.get("coordinates"), source, where), dtype=np.float64).reshape(-1, 2)
    if len(vertices) == 0:
        raise DataError(source, f"{where}: {geometry.get('type')} without coordinates")
    return vertices


def _find_image(geojson: Path) -> Path:
    for folder in (geojson.parent, geojson.parent / "images"):
        for candidate in sorted(folder.glob(f"{glob.escape(geojson.stem)}.*")):
            if candidate.suffix.lower() in IMAGE_SUFFIXES and candidate.is_file():
                return candidate
    raise DataError(geojson, f"no image {geojson.stem}.* beside it or in images/")


def read_file(path: Path, names: ClassNames, skipped: Counter[str]) -> AnnotatedImage:
    """Read one GeoJSON file, counting skipped features by reason in ``skipped``."""
    objects = ObjectList(path)
    for number, feature in enumerate(_features(path), start=1):
        where = f"feature {number}"
        if not isinstance(feature, Mapping):
            raise DataError(path, f"{where} is not an object: {str(feature)[:40]!r}")
        geometry = feature.get("geometry") or {}
        properties = feature.get("properties") or {}
        if not isinstance(geometry, Mapping) or not isinstance(properties, Mapping):
            raise DataError(path, f"{where} has a malformed geometry or properties")
        kind = geometry.get("type")
        name = _class_name(properties, path, where)
        if kind in ("Point", "MultiPoint"):
            label = names.index(name, path, where) if name is not None else UNCLASSIFIED
            score = _score(properties, path, where)
            for xy in _vertices(geometry, path, where):
                objects.add_point(xy, label, score)
        elif kind in ("Polygon", "MultiPolygon") and name is not None:
            xy = _vertices(geometry, path, where)
            label = names.index(name, path, where)
            objects.add_box([*xy.min(axis=0), *xy.max(axis=0)], label, _score(properties, path, where))
        elif kind in ("Polygon", "MultiPolygon"):
            skipped["polygons without a class"] += 1
        else:
            skipped[f"{kind or 'empty'} geometries"] += 1
    image_path = _find_image(path)
    width, height = image_size(image_path)
    return objects.to_image(image_path, width, height, path.stem)


def read(path: Path, classes: list[str] | None = None) -> Dataset:
    """Read a folder of ``.geojson`` files, or one file.

    Raises:
        DataError: If there is no GeoJSON file, a file is malformed or an image is missing.

    """
    if not path.exists():
        raise DataError(path, "not found")
    files = sorted(path.glob("*.geojson")) if path.is_dir() else [path]
    if not files:
        raise DataError(path, "no .geojson files")
    names = ClassNames(classes)
    skipped: Counter[str] = Counter()
    images = [read_file(file, names, skipped) for file in files]
    for reason, count in skipped.items():
        log.warning("%s: skipped %d %s", path, count, reason)
    return Dataset(names.names, images, {}, path.stem if path.is_file() else path.name)
