"""``cytolens stats``: counts and sizes of a dataset."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cytolens.cli.options import DataOption, FormatOption, JsonOption, SplitOption
from cytolens.cli.output import number, print_json, print_table
from cytolens.data.stats import BLANK_STD

LISTED = 20
"""How many blank crops and duplicate groups the tables list (``--json`` lists them all)."""


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
    crops = figures.get("crops")
    if crops:
        columns += ["blank", "duplicates"]
        table = [[*row, crops["per_class"][row[0]]["blank"], crops["per_class"][row[0]]["duplicates"]] for row in table]
    print_table("Per class", columns, table)
    if crops:
        _print_crop_checks(crops)


def _more(count: int) -> str:
    return f" (the first {LISTED}; --json lists all {count})" if count > LISTED else ""


def _print_crop_checks(crops: dict[str, Any]) -> None:
    blank, groups = crops["blank"], crops["duplicates"]
    title = f"Blank crops (grey-level std below {number(crops['blank_std'])}): {len(blank)}"
    if blank:
        rows = [[entry["image"], entry["grey_std"], entry["file"]] for entry in blank[:LISTED]]
        print_table(title + _more(len(blank)), ["image", "grey std", "file"], rows)
    else:
        typer.echo(title)
    title = f"Exact duplicates (same pixels): {len(groups)} group(s)"
    if groups:
        rows = [[k + 1, entry["image"], entry["file"]] for k, group in enumerate(groups[:LISTED]) for entry in group]
        print_table(title + _more(len(groups)), ["group", "image", "file"], rows)
    else:
        typer.echo(title)


def stats(
    data: DataOption,
    fmt: FormatOption = None,
    split: SplitOption = None,
    as_json: JsonOption = False,
    blank_std: Annotated[
        float,
        typer.Option("--blank-std", min=0, help="Crops: a grey-level standard deviation below this is a blank crop."),
    ] = BLANK_STD,
) -> None:
    """Count the images, objects and classes of a dataset; give image and box sizes and point spacing.

    Objects are boxes and points, counted per class; a dataset of labelled crops (class folders) is
    counted by image labels instead, and its crops are checked: near-uniform (blank) crops and exact
    duplicates are listed by file. Point spacing is the distance from each point to its nearest
    neighbour, a guide to the matching radius of point detection.
    """
    from cytolens.data.stats import crop_checks, dataset_stats
    from cytolens.io.images import read_image
    from cytolens.io.spec import load_data
    from cytolens.progress import progress

    dataset = load_data(data, fmt=fmt, split=split)
    figures = dataset_stats(dataset)
    if figures["per_class_counts"] == "image_labels" and figures["image_labels"]:
        pixels = (read_image(image.path) for image in dataset.images)
        shown = progress(pixels, len(dataset), "checking crops", not as_json)
        figures["crops"] = crop_checks(dataset, shown, blank_std)
    if as_json:
        print_json(figures)
    else:
        _print_tables(figures)
