"""``cytolens examples``: where the bundled example images are."""

from __future__ import annotations

import typer


def examples() -> None:
    """Print the folder of the bundled example images: three BCCD blood smears in Pascal VOC layout.

    Use it as data: cytolens stats --data "$(cytolens examples)" --format voc
    """
    from cytolens.examples import path

    typer.echo(str(path()))
