"""The one colour palette for classes, shared by annotation exports (QuPath GeoJSON) and overlays.

Classes 0-9 get matplotlib's ``tab10`` colours, 10-19 their lighter ``tab20`` partners, and the
palette repeats after 20 classes. Unclassified points are black.
"""

from __future__ import annotations

from functools import cache

from cytolens.data.annotations import UNCLASSIFIED

UNCLASSIFIED_COLOR = (0, 0, 0)
"""RGB colour of a point without a class."""


@cache
def _palette() -> tuple[tuple[int, int, int], ...]:
    from matplotlib import colormaps

    tab20 = colormaps["tab20"].colors
    ordered = list(tab20[0::2]) + list(tab20[1::2])  # strong hues first: the first ten are tab10
    return tuple(tuple(round(channel * 255) for channel in colour) for colour in ordered)


def class_color(index: int) -> tuple[int, int, int]:
    """RGB colour (0-255 each) of class ``index``; :data:`UNCLASSIFIED` gives :data:`UNCLASSIFIED_COLOR`.

    Raises:
        ValueError: If ``index`` is negative and not :data:`UNCLASSIFIED`.

    """
    if index == UNCLASSIFIED:
        return UNCLASSIFIED_COLOR
    if index < 0:
        raise ValueError(f"class index must be >= 0 or UNCLASSIFIED, got {index}")
    palette = _palette()
    return palette[index % len(palette)]
