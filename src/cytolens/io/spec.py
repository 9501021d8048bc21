"""Dataset spec files and :func:`load_data`, the single entry through which every command gets its data.

A spec is a YAML file::

    format: voc                          # a format name of cytolens.io.registry.FORMATS
    root: ../shared/datasets/bccd        # relative to the spec file (or absolute)
    name: bccd                           # optional; defaults to the format's name for the dataset
    classes: [WBC, RBC, Platelets]       # optional: the fixed class order (other names are an error)
    # classes: {RBC: red, WBC: white, Platelets: platelet}   # or: source name -> target name
    splits:                              # optional; replaces the splits the format defines
      lists: {train: [id1, id2], val: val.txt}   # ids inline, or a text file of ids (one a line)
      # ratio: {train: 0.7, val: 0.1, test: 0.2}  # seeded partition (fractions > 0, normalised)
      # folds: 5                          # fold0..fold4 (held out) and train0..train4 (the rest)
      seed: 0                            # for ratio and folds

A class mapping renames classes, and merges several source classes given the same target; the
target order is the order of first appearance among the mapping's values. Every class in the data
must be in the mapping.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cytolens.data.annotations import Dataset
from cytolens.data.splits import kfold_split, ratio_split
from cytolens.errors import CytolensError, DataError
from cytolens.io.atomic import write_text
from cytolens.io.registry import FORMATS, read_dataset
from cytolens.io.text import read_text, read_yaml
from cytolens.io.validation import check_number

SPEC_SUFFIXES = (".yaml", ".yml")
"""File suffixes that mark a dataset spec."""

ClassMap = list[str] | dict[str, str]
"""A fixed class order, or a source-name to target-name mapping."""


@dataclass
class SplitSpec:
    """How to split a dataset: exactly one of ``lists``, ``ratio`` and ``folds``.

    Attributes:
        lists: Split name to image ids, or to a text file of ids (one a line).
        ratio: Split name to fraction, for a seeded partition.
        folds: Number of cross-validation folds.
        seed: Random seed for ``ratio`` and ``folds``.

    """

    lists: dict[str, list[str] | Path] | None = None
    ratio: dict[str, float] | None = None
    folds: int | None = None
    seed: int = 0

    def make(self, ids: list[str], source: Path) -> dict[str, list[str]]:
        """The splits of a dataset with image ``ids``; ``source`` (the spec file) is named in errors.

        Raises:
            DataError: If a list names unknown ids, a list file is unreadable or the ratio or folds are invalid.

        """
        try:
            if self.ratio is not None:
                return ratio_split(ids, self.ratio, self.seed)
            if self.folds is not None:
                return kfold_split(ids, self.folds, self.seed)
        except ValueError as error:
            raise DataError(source, str(error)) from None
        known = set(ids)
        splits = {}
        for name, listed in (self.lists or {}).items():
            keys = _read_id_list(listed) if isinstance(listed, Path) else listed
            unknown = [key for key in keys if key not in known]
            if unknown:
                shown = ", ".join(unknown[:5])
                raise DataError(source, f"split {name!r} lists {len(unknown)} ids not in the dataset: {shown}")
            splits[name] = keys
        return splits


def _read_id_list(path: Path) -> list[str]:
    lines = read_text(path, "split list").splitlines()
    return [line.split()[0] for line in lines if line.strip()]


@dataclass
class DatasetSpec:
    """A dataset: where it is, in which format, with which classes and splits.

    Attributes:
        format: A format name of :data:`cytolens.io.registry.FORMATS`.
        root: The dataset folder or file.
        name: Dataset name; empty keeps the one the format gives.
        classes: A fixed class order, or a source-name to target-name mapping; ``None`` keeps the data's classes.
        splits: How to split; ``None`` keeps the splits the format defines.
        source: The spec file (named in errors), if the spec came from one.

    """

    format: str
    root: Path
    name: str = ""
    classes: ClassMap | None = None
    splits: SplitSpec | None = None
    source: Path | None = None

    def load(self) -> Dataset:
        """Read the dataset, map its classes and make its splits.

        Raises:
            CytolensError: If the format is unknown or cannot be read.
            DataError: If a file is missing or malformed, or a class is not in the class map.

        """
        source = self.source or self.root
        fixed = self.classes if isinstance(self.classes, list) else None
        dataset = read_dataset(self.root, self.format, classes=fixed)
        if isinstance(self.classes, Mapping):
            dataset = rename_classes(dataset, self.classes, source)
        if self.splits is not None:
            dataset.splits = self.splits.make([image.image_id for image in dataset.images], source)
        dataset.name = self.name or dataset.name
        return dataset


def rename_classes(dataset: Dataset, mapping: Mapping[str, str], source: str | Path) -> Dataset:
    """A copy of ``dataset`` with its classes renamed (and merged) by ``mapping``.

    Args:
        dataset: The dataset.
        mapping: Source class name to target name; several sources may share a target.
        source: The spec file that holds the mapping, named in errors.

    Returns:
        The dataset whose classes are the distinct targets, in order of first appearance in ``mapping``.

    Raises:
        DataError: If a class of the dataset is not in the mapping.

    """
    missing = [name for name in dataset.classes if name not in mapping]
    if missing:
        raise DataError(source, f"class {missing[0]!r} of the dataset is not in the class map ({', '.join(mapping)})")
    targets = list(dict.fromkeys(mapping.values()))
    return dataset.relabel(targets, np.array([targets.index(mapping[name]) for name in dataset.classes]))


_SPEC_KEYS = ("format", "root", "name", "classes", "splits")
_SPLIT_KEYS = ("lists", "ratio", "folds", "seed")


def _beside(spec_file: Path, relative: Any) -> Path:
    """A path written in a spec file, taken from the spec file's folder (absolute paths stay)."""
    return Path(os.path.abspath(spec_file.parent / str(relative)))


def _name(value: Any, what: str, path: Path) -> str:
    """A name written in a spec: text, or a whole number read as text (YAML reads ``1`` as a number)."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    raise DataError(path, f"{what} must be text, not {value!r}")


def _parse_classes(value: Any, path: Path) -> ClassMap | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [_name(name, "a class name", path) for name in value]
    if isinstance(value, Mapping):
        return {_name(key, "a class name", path): _name(target, "a class name", path) for key, target in value.items()}
    raise DataError(path, f"classes must be a list of names or a mapping of names, not {value!r}")


def _parse_lists(value: Any, path: Path) -> dict[str, list[str] | Path]:
    if not isinstance(value, Mapping):
        raise DataError(path, f"splits lists must map split names to ids or id files, not {value!r}")
    lists: dict[str, list[str] | Path] = {}
    for name, ids in value.items():
        if isinstance(ids, list):
            lists[_name(name, "a split name", path)] = [_name(key, f"an id of split {name!r}", path) for key in ids]
        elif isinstance(ids, str):
            lists[_name(name, "a split name", path)] = _beside(path, ids)
        else:
            raise DataError(path, f"split {name!r} must be a list of ids or an id file, not {ids!r}")
    return lists


def _parse_splits(value: Any, path: Path) -> SplitSpec | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) - set(_SPLIT_KEYS):
        raise DataError(path, f"splits must be a mapping with keys among {', '.join(_SPLIT_KEYS)}")
    given = [key for key in ("lists", "ratio", "folds") if value.get(key) is not None]
    if len(given) != 1:
        raise DataError(path, f"splits needs exactly one of lists, ratio, folds (got {', '.join(given) or 'none'})")
    seed = check_number(value.get("seed", 0), "splits seed", path, low=0, high=2**32 - 1, integer=True)
    if "lists" in given:
        return SplitSpec(lists=_parse_lists(value["lists"], path), seed=seed)
    if "ratio" in given:
        ratio = value["ratio"]
        if not isinstance(ratio, Mapping) or not ratio:
            raise DataError(path, f"splits ratio must map split names to fractions, not {ratio!r}")
        shares = {
            _name(name, "a split name", path): check_number(share, f"ratio of split {name}", path, low=0, low_open=True)
            for name, share in ratio.items()
        }
        return SplitSpec(ratio=shares, seed=seed)
    return SplitSpec(folds=check_number(value["folds"], "splits folds", path, low=2, integer=True), seed=seed)


def load_spec(path: str | Path) -> DatasetSpec:
    """Read a dataset spec file; relative paths in it are taken from the spec file's folder.

    Raises:
        DataError: If the file is missing, is not valid YAML or does not describe a dataset.

    """
    path = Path(path)
    content = read_yaml(path, "dataset spec")
    if not isinstance(content, Mapping):
        raise DataError(path, "a dataset spec must be a YAML mapping with format and root")
    unknown = sorted(set(content) - set(_SPEC_KEYS), key=str)
    if unknown:
        yolo = "; a YOLO data.yaml? give --format yolo" if {"names", "nc", "train", "val"} & set(unknown) else ""
        raise DataError(path, f"unknown key {unknown[0]!r} (known: {', '.join(_SPEC_KEYS)}){yolo}")
    for key in ("format", "root"):
        if not content.get(key):
            raise DataError(path, f"{key} is missing")
    fmt, root, name = content["format"], content["root"], content.get("name") or ""
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise DataError(path, f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if not isinstance(root, str):
        raise DataError(path, f"root must be a folder or file name, not {root!r}")
    return DatasetSpec(
        format=fmt,
        root=_beside(path, root),
        name=_name(name, "name", path),
        classes=_parse_classes(content.get("classes"), path),
        splits=_parse_splits(content.get("splits"), path),
        source=path,
    )


def _relative(target: Path, folder: Path) -> str:
    return Path(os.path.relpath(target, folder)).as_posix()


def write_spec(path: str | Path, spec: DatasetSpec) -> None:
    """Write ``spec`` as a YAML spec file at ``path``, with paths relative to the file's folder."""
    path = Path(path)
    content: dict[str, Any] = {"format": spec.format, "root": _relative(spec.root, path.parent)}
    if spec.name:
        content["name"] = spec.name
    if spec.classes is not None:
        content["classes"] = list(spec.classes) if isinstance(spec.classes, list) else dict(spec.classes)
    splits = spec.splits
    if splits is not None:
        if splits.lists is not None:
            lists = {
                name: _relative(ids, path.parent) if isinstance(ids, Path) else list(ids)
                for name, ids in splits.lists.items()
            }
            content["splits"] = {"lists": lists}
        elif splits.ratio is not None:
            content["splits"] = {"ratio": dict(splits.ratio), "seed": splits.seed}
        else:
            content["splits"] = {"folds": splits.folds, "seed": splits.seed}
    write_text(path, yaml.safe_dump(content, sort_keys=False, default_flow_style=None))


def load_data(
    data: str | Path, fmt: str | None = None, split: str | None = None, classes: ClassMap | None = None
) -> Dataset:
    """The dataset every command works on.

    Args:
        data: A dataset spec (``.yaml``/``.yml``, when ``fmt`` is not given), or a dataset folder or
            file in format ``fmt`` (so a YOLO ``data.yaml`` is read as YOLO when ``fmt="yolo"``).
        fmt: The annotation format of ``data``; must be ``None`` for a spec.
        split: Return only this split.
        classes: A fixed class order or a class mapping; for a spec, replaces the spec's ``classes``.

    Returns:
        The dataset, or its ``split`` subset. Splits come from the spec when it defines them, else
        from the format.

    Raises:
        CytolensError: If no format is given for a non-spec ``data``, or ``split`` is not defined.
        DataError: If a file is missing or malformed, or a class is not in the class map.

    """
    data = Path(data)
    if not data.exists():
        raise DataError(data, "not found")
    if fmt is None and data.suffix.lower() in SPEC_SUFFIXES:
        spec = load_spec(data)
        if classes is not None:
            spec = dataclasses.replace(spec, classes=classes)
    elif fmt is None:
        raise CytolensError(f"{data}: give its annotation format ({', '.join(FORMATS)}) or a dataset spec .yaml")
    else:
        spec = DatasetSpec(fmt, data, classes=classes)
    dataset = spec.load()
    return dataset if split is None else split_of(dataset, split, data)


def split_of(dataset: Dataset, split: str, data: str | Path) -> Dataset:
    """The images of ``dataset``'s split ``split``.

    Raises:
        CytolensError: Naming ``data`` (where the dataset was read from), if the split is not defined.

    """
    if split not in dataset.splits:
        known = ", ".join(dataset.splits) or "none"
        raise CytolensError(f"{data}: unknown split {split!r} (known: {known})")
    return dataset.subset(split)
