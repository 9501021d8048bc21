"""``cytolens stats``: counts and sizes of a dataset."""

from __future__ import annotations

from typing import Any

from cytolens.cli.options import DataOption, FormatOption, JsonOption, SplitOption
from cytolens.cli.output import number, print_json, print_table


def _spread(figures: dict[str, Any]) -> str:
    return " / ".join(number(figures[key]) for key in ("min", "median", "max"))


def _print_tables(figures: dict[str, Any]) -> None:
    rows: list[tuple[str, Any]] = [("images", figures["images"]), ("objects (boxes + points)", figures["objects"])]
    kinds = ("boxes", "points", "unclassified_points", "image_labels")
    rows += [(kind, figures[kind]) for kind in kinds if figures[kind]]
    rows += [(f"split {name} (images)", count) for name, count in figures["splits"].items()]
    rows += [(f"image {side} min / median / max", _spread(figures["image_size"][side])) for side in ("width", "height")]
    if figures["points"]:
        rows.append(("nearest-neighbour distance min / median / max", _spread(figures["point_spacing"])))
    print_table(f"Dataset {figures['name']}", ["", "value"], [(name.replace("_", " "), value) for name, value in rows])
    sizes = figures["box_size"]
    columns = ["class", figures["per_class_counts"].replace("_", " ")]
    if sizes:
        columns += ["box width min / median / max", "box height min / median / max"]
    table = []
    for name, count in figures["per_class"].items():
        size = sizes.get(name)
        boxes = [_spread(size["width"]), _spread(size["height"])] if size else ["-", "-"]
        table.append([name, count, *boxes][: len(columns)])
    print_table("Per class", columns, table)


def stats(data: DataOption, fmt: FormatOption = None, split: SplitOption = None, as_json: JsonOption = False) -> None:
    """Count the images, objects and classes of a dataset; give image and box sizes and point spacing.

    Objects are boxes and points, counted per class; a dataset of labelled crops (class folders) is
    counted by image labels instead. Point spacing is the distance from each point to its nearest
    neighbour, a guide to the matching radius of point detection.
    """
    from cytolens.data.stats import dataset_stats
    from cytolens.io.spec import load_data

    figures = dataset_stats(load_data(data, fmt=fmt, split=split))
    if as_json:
        print_json(figures)
    else:
        _print_tables(figures)
