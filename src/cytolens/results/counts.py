"""Cell counts per image and the ratios a haematologist reads (e.g. RBC:WBC)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cytolens.results.result import Result


def parse_ratio(text: str, classes: Sequence[str]) -> tuple[str, str]:
    """Parse ``"A:B"`` into two class names, checking both exist.

    Raises:
        ValueError: If the text is not ``A:B`` or a name is not a class.

    """
    parts = text.split(":")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"ratio {text!r} must look like CLASS:CLASS (e.g. RBC:WBC)")
    for name in parts:
        if name not in classes:
            raise ValueError(f"ratio {text!r}: {name!r} is not a class of the model ({', '.join(classes)})")
    return parts[0], parts[1]


def counts_table(
    results: Sequence[Result], classes: Sequence[str], ratios: Sequence[tuple[str, str]] = ()
) -> pd.DataFrame:
    """One row per image: its id, count per class, total, percentage per class, each ratio ``A:B`` (count A / count B).

    Percentages are rounded to one decimal, ratios to three significant digits (the counts are exact). A ratio
    whose denominator is zero is left empty (NaN), and so are the percentages of an image without cells.
    """
    rows = []
    for result in results:
        counts = result.counts()
        total = sum(counts.values())
        row: dict[str, object] = {"image": result.image_id}
        row.update({name: counts.get(name, 0) for name in classes})
        row["total"] = total
        row.update(
            {f"{name} %": round(100.0 * counts.get(name, 0) / total, 1) if total else np.nan for name in classes}
        )
        for top, bottom in ratios:
            row[f"{top}:{bottom}"] = float(f"{counts[top] / counts[bottom]:.3g}") if counts.get(bottom) else np.nan
        rows.append(row)
    columns = ["image", *classes, "total", *[f"{name} %" for name in classes], *[f"{a}:{b}" for a, b in ratios]]
    return pd.DataFrame(rows, columns=columns)
