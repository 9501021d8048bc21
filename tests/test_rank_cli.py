"""``cytolens rank`` on bundled example images with the bundled blood-cells model (3 passes: seconds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cytolens.cli.main import app
from cytolens.examples import path as examples_path
from cytolens.store.database import open_store
from cytolens.store.queue import review_queue
from cytolens.store.rounds import read_proposals

EXAMPLES = sorted((examples_path() / "JPEGImages").glob("*.jpg"))[:2]

WIDE = {"COLUMNS": "300"}  # usage errors in Rich panels: wide enough not to wrap a line

pytestmark = pytest.mark.usefixtures("one_thread")


def test_rank_writes_the_ranking_and_records_a_round(tmp_path: Path) -> None:
    pool, out, store = tmp_path / "pool", tmp_path / "out", tmp_path / "store.db"
    pool.mkdir()
    for image in EXAMPLES:
        shutil.copy(image, pool)
    args = ["rank", str(pool), "--model", "blood-cells", "--out", str(out), "--passes", "3", "--dropout", "0.2"]
    result = CliRunner().invoke(app, [*args, "--rare", "WBC", "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert "Top 2 of 2 images by relevance" in result.stdout

    ranking = pd.read_csv(out / "ranking.csv")
    assert ranking.columns.tolist() == ["image", "R", "entropy", "bald", "random", "n_cells", "n_uncertain", "n_rare"]
    assert sorted(ranking["image"]) == [image.stem for image in EXAMPLES]
    assert ranking["R"].is_monotonic_decreasing
    assert (ranking["n_rare"] >= 1).all()  # each image has a white cell, a rare-class candidate with --rare WBC

    cells = pd.read_csv(out / "cells.csv")
    assert cells.groupby("image").size().to_dict() == dict(zip(ranking["image"], ranking["n_cells"], strict=True))
    for column in ("Ud", "Uc", "Ur"):
        assert cells[column].between(0, 1).all()
    for image in ranking.itertuples():
        mine = cells[cells["image"] == image.image]
        uncertain = (mine["Uc"] <= 0.8) | (mine["Ud"] <= 0.9)
        assert (mine["Uc"] <= 0.8).sum() + (mine["Ud"] <= 0.9).sum() + 10 * mine["Ur"].sum() == image.R
        assert image.n_uncertain == uncertain.sum()
        features = json.loads((out / "geojson" / f"{image.image}.geojson").read_text())["features"]
        assert {"Ud", "Uc", "Ur"} <= set(features[0]["properties"]["measurements"])

    tasks = json.loads((out / "label-studio.json").read_text())
    scores = {Path(task["data"]["image"]).stem: task["predictions"][0]["score"] for task in tasks}
    assert scores == dict(zip(ranking["image"], ranking["R"], strict=True))
    assert (out / "label-studio.xml").is_file()

    with open_store(store, pool) as opened:
        queue = review_queue(opened)
        assert [Path(entry.image).stem for entry in queue] == ranking["image"].tolist()
        assert [entry.relevance for entry in queue] == ranking["R"].tolist()
        proposals = read_proposals(opened, queue[0].image)
    assert len(proposals) == ranking["n_cells"][0]
    assert set(proposals[0].uncertainties) == {"Ud", "Uc", "Ur"}


@pytest.mark.parametrize(
    ("options", "code", "message"),
    [
        (["--rare", "teardrop"], 1, "error: blood-cells: rare classes: class 'teardrop' is not in the class map"),
        (["--by", "margin"], 2, "'margin' is not one of"),
        (["--passes", "1"], 2, "--passes"),
    ],
)
def test_rank_refuses_bad_options_in_one_line(tmp_path: Path, options: list[str], code: int, message: str) -> None:
    args = ["rank", str(EXAMPLES[0]), "--model", "blood-cells", "--out", str(tmp_path / "out"), *options]
    result = CliRunner().invoke(app, args, env=WIDE)
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output


def test_rank_into_a_store_needs_a_folder(tmp_path: Path) -> None:
    args = ["rank", str(EXAMPLES[0]), "--model", "blood-cells", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [*args, "--store", str(tmp_path / "store.db")], env=WIDE)
    assert result.exit_code == 2
    assert "Invalid value for --store: needs POOL to be a folder (the store's image root)" in result.output
    assert not (tmp_path / "store.db").exists()


def test_rank_reports_an_unreadable_image_in_one_line_and_ranks_the_others(tmp_path: Path) -> None:
    pool, out = tmp_path / "pool", tmp_path / "out"
    pool.mkdir()
    shutil.copy(EXAMPLES[0], pool)
    (pool / "broken.jpg").write_bytes(b"not a picture")
    args = ["rank", str(pool), "--model", "blood-cells", "--out", str(out), "--passes", "2", "--dropout", "0.2"]
    result = CliRunner().invoke(app, args, env=WIDE)
    assert result.exit_code == 1
    assert f"error: {pool / 'broken.jpg'}:" in result.stderr
    assert "Traceback" not in result.output
    assert pd.read_csv(out / "ranking.csv")["image"].tolist() == [EXAMPLES[0].stem]
    refused = CliRunner().invoke(app, [*args, "--exist-ok", "--store", str(tmp_path / "store.db")], env=WIDE)
    assert refused.exit_code == 1
    assert f"error: {pool / 'broken.jpg'}:" in refused.stderr  # the store refuses it before the model runs
