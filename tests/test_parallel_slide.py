"""A slide's regions on a Dask LocalCluster of 2 workers give the cells of the serial run, in the same order."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cytolens.inference.slide import predict_slides
from cytolens.io.output_run import OutputRun
from test_slide import POINTS, chula_crops, mosaic, write_slide  # noqa: F401 (chula_crops: a fixture of test_slide)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.timeout(600)
def test_two_workers_find_the_cells_of_one(tmp_path: Path, chula_crops) -> None:  # noqa: F811 (the fixture)
    path = write_slide(tmp_path / "s.tif", [mosaic(chula_crops)], None)
    options = {"tile": 512, "overlap": 128, "tissue": False, "show_progress": False}
    for name, workers in (("one", 1), ("two", 2)):
        with OutputRun(tmp_path / name) as run:
            (summary,) = predict_slides(POINTS, [path], run.path, workers=workers, **options)
        assert summary.regions_run == 4
    for table in ("cells.parquet", "cells.csv", "summary.csv"):
        assert (tmp_path / "two" / table).read_bytes() == (tmp_path / "one" / table).read_bytes(), table
    assert len(pd.read_parquet(tmp_path / "two" / "cells.parquet")) > 20
