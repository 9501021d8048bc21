"""Names of the table columns that several outputs share (cells.csv, images.csv, GeoJSON measurements, napari CSVs)."""

from __future__ import annotations

from collections.abc import Sequence


def probability_columns(classes: Sequence[str]) -> list[str]:
    """The columns holding a cell's probability of each class, in class order: ``p_<class>``.

    Args:
        classes: The model's class names.

    Returns:
        ``["p_" + name for name in classes]``.

    """
    return [f"p_{name}" for name in classes]
