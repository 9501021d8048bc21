"""``cytolens convert``: annotations from one format to another."""

from __future__ import annotations

from typing import Annotated

import typer

from cytolens.cli.options import DataOption, FormatName, FormatOption, JsonOption, OutOption, SplitOption
from cytolens.cli.output import print_json


def convert(
    data: DataOption,
    to: Annotated[FormatName, typer.Option("--to", "-t", help="Format to write.")],
    out: OutOption,
    fmt: FormatOption = None,
    split: SplitOption = None,
    exist_ok: Annotated[
        bool, typer.Option("--exist-ok", help="Replace an existing --out (whole, when the conversion ends).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Convert annotations to another format (images are not copied).

    Anything the target format cannot hold (points in VOC, scores in YOLO...) is dropped with a
    warning and counted in the summary. --out must be new or empty unless --exist-ok, and outside the
    source; the conversion is written beside it and moved into place only when complete.
    """
    from cytolens.io.convert import convert as convert_data

    dropped = convert_data(data, fmt, to, out, split=split, exist_ok=exist_ok)
    if as_json:
        print_json({"data": data, "format": fmt, "split": split, "to": to, "out": out, "dropped": dropped})
        return
    lost = ", ".join(f"{count:,} {kind}" for kind, count in dropped.items()) or "nothing"
    typer.echo(f"wrote {to} annotations to {out}; dropped {lost}")
