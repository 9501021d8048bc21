"""Interrupted writes (issue 8): after a failure or a kill at any step, an output holds one whole run or nothing.

A write is made to fail at each step in turn (``os.replace`` raising on its Nth call into the staging
path), a kill is simulated at each move of the guard that puts a run in place, and a real ``predict``
process is killed half-way. The earlier run must survive whole, the run-level files must agree with
each other and with the per-image files, and the next run must clean what a killed run left.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.io.registry import write_dataset
from helpers import write_image
from test_faults_run_folders import (
    STEMS,
    assert_one_line_error,
    assert_whole_run,
    beside,
    checkpoint,  # noqa: F401 - fixture
    images,  # noqa: F401 - fixture
    invoke,
    predict,
    snapshot,
)

pytestmark = pytest.mark.usefixtures("one_thread")

FILES_PER_IMAGE = 3
"""Files written per image: an overlay, a GeoJSON and a napari CSV."""
WRITES_PER_RUN = FILES_PER_IMAGE * len(STEMS) + 2
"""Files a 3-image box-model run moves into place: the files of each image, then two COCO files
(the rows of cells.csv and counts.csv are appended; see the test of a failed append)."""


class ProcessKilledError(RuntimeError):
    """Stands for the process being killed: the code after the point where it is raised never runs."""


def fail_at_write(monkeypatch: pytest.MonkeyPatch, n: int) -> list[str]:
    """Make the ``n``-th atomic move of a file into a staging path fail as on a full disk; returns the moves."""
    moves: list[str] = []
    replace = os.replace

    def failing(source: str | Path, target: str | Path) -> None:
        if ".partial-" in str(target):
            moves.append(str(target))
            if len(moves) == n:
                raise OSError(28, "No space left on device")
        replace(source, target)

    monkeypatch.setattr(os, "replace", failing)
    return moves


def kill_at(monkeypatch: pytest.MonkeyPatch, target: object, name: str, prefix: str) -> None:
    """Raise :class:`ProcessKilledError` when ``target.name`` is called on a path whose name starts with ``prefix``."""
    original = getattr(target, name)

    def killed(path: str | Path, *args: object, **kwargs: object) -> object:
        if Path(path).name.startswith(prefix):
            raise ProcessKilledError(f"killed at {name}({path})")
        return original(path, *args, **kwargs)

    monkeypatch.setattr(target, name, killed)


@pytest.fixture
def earlier(checkpoint: Path, images: Path, tmp_path: Path) -> Path:  # noqa: F811 - fixture
    """An output folder holding a whole earlier run over image ``a``."""
    out = tmp_path / "out"
    assert predict(checkpoint, out, images / "a.png").exit_code == 0
    return out


def test_every_write_of_a_run_is_counted(
    checkpoint: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    moves = fail_at_write(monkeypatch, 0)
    assert predict(checkpoint, tmp_path / "out", images).exit_code == 0
    assert len(moves) == WRITES_PER_RUN  # so the sweeps below fail each of them


@pytest.mark.parametrize("n", range(1, WRITES_PER_RUN + 1))
def test_a_failed_write_at_any_step_keeps_the_earlier_run_whole(
    n: int, checkpoint: Path, images: Path, earlier: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    before = snapshot(earlier)
    fail_at_write(monkeypatch, n)
    result = predict(checkpoint, earlier, images, "--exist-ok")
    assert_one_line_error(result, "No space left on device")
    assert snapshot(earlier) == before
    assert beside(earlier) == []


@pytest.mark.parametrize("n", range(1, WRITES_PER_RUN + 1))
def test_a_failed_write_at_any_step_in_a_new_out_leaves_nothing_or_the_images_done(
    n: int, checkpoint: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    out = tmp_path / "out"
    fail_at_write(monkeypatch, n)
    result = predict(checkpoint, out, images)
    assert_one_line_error(result, "No space left on device")
    done = STEMS[: (n - 1) // FILES_PER_IMAGE] if n <= FILES_PER_IMAGE * len(STEMS) else []  # files written before
    if done:  # kept, every file agreeing on them
        assert_whole_run(out, done)
        assert "holds the part of the run that was finished before it failed" in result.stderr
    else:  # nothing finished, or the tables failed: nothing at all
        assert not out.exists()
    assert beside(out) == []


@pytest.mark.parametrize("table", ["cells.csv", "counts.csv"])
def test_a_failed_append_to_a_table_keeps_the_images_done_and_their_rows_only(
    table: str, checkpoint: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    from cytolens.results.writers import PredictionWriter

    append, calls = PredictionWriter._append, []

    def failing(self: PredictionWriter, name: str, rows: object) -> None:
        calls.append(name)
        append(self, name, rows)  # half written: the rows are there when the disk fills up
        if calls.count(table) == 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(PredictionWriter, "_append", failing)
    out = tmp_path / "out"
    assert_one_line_error(predict(checkpoint, out, images), "No space left on device")
    assert_whole_run(out, STEMS[:1])


def test_a_kill_between_the_two_moves_puts_the_earlier_run_back(
    checkpoint: Path, images: Path, earlier: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    before = snapshot(earlier)
    with monkeypatch.context() as patch:
        kill_at(patch, Path, "rename", ".partial-")  # the earlier run is aside, the new one not yet in place
        result = predict(checkpoint, earlier, images, "--exist-ok")
    assert isinstance(result.exception, ProcessKilledError)
    assert not earlier.exists() and beside(earlier) == [".partial-out", ".previous-out"]
    result = predict(checkpoint, earlier, images)
    assert_one_line_error(result, "already exists and is not empty")
    assert "put back the earlier run" in result.stderr
    assert snapshot(earlier) == before
    assert beside(earlier) == []


def test_a_kill_after_the_new_run_is_in_place_keeps_it(
    checkpoint: Path, images: Path, earlier: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    with monkeypatch.context() as patch:
        kill_at(patch, shutil, "rmtree", ".previous-")  # the new run is in place, the earlier one not yet deleted
        result = predict(checkpoint, earlier, images, "--exist-ok")
    assert isinstance(result.exception, ProcessKilledError)
    assert_one_line_error(predict(checkpoint, earlier, images), "already exists and is not empty")
    assert_whole_run(earlier, STEMS)


def test_a_killed_predict_process_leaves_the_earlier_run_and_the_next_run_cleans_up(
    checkpoint: Path, images: Path, earlier: Path  # noqa: F811
) -> None:
    before = snapshot(earlier)
    script = (
        "import os, signal, sys\n"
        "from cytolens.results.writers import PredictionWriter\n"
        "add = PredictionWriter.add\n"
        "def add_then_die(self, result, image=None):\n"
        "    add(self, result, image)\n"
        "    if len(self.results) == 2:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "PredictionWriter.add = add_then_die\n"
        "from cytolens.cli.main import run\n"
        "sys.argv[0] = 'cytolens'\n"
        "run()\n"
    )
    command = [sys.executable, "-c", script, "predict", str(images), "--model", str(checkpoint)]
    command += ["--out", str(earlier), "--score-threshold", "0", "--exist-ok"]
    killed = subprocess.run(command, capture_output=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert snapshot(earlier) == before
    staging = earlier.with_name(".partial-out")
    rows = pd.read_csv(staging / "cells.csv")["image"]  # half a run (its COCO files come at the end), never seen
    assert sorted({Path(image).stem for image in rows}) == ["a", "b"]
    result = predict(checkpoint, earlier, images / "c.png", "--exist-ok")
    assert result.exit_code == 0, result.output
    assert "deleted the unfinished output of a killed run" in result.stderr
    assert_whole_run(earlier, ["c"])


# convert: all label files or none


@pytest.fixture
def points(tmp_path: Path) -> Path:
    """A points CSV whose last image holds a class that Chula RBC-12 label files cannot name."""
    classes = ["normal cell", "not a Chula class"]
    dataset = Dataset(classes, [
        AnnotatedImage(write_image(tmp_path / f"{stem}.png"), 64, 48, cells=Cells(centres=[[10, 12]], labels=[label]))
        for stem, label in zip(STEMS, [0, 0, 1], strict=True)
    ])
    write_dataset(dataset, tmp_path / "points.csv", "points")
    return tmp_path / "points.csv"


def test_convert_failing_half_way_writes_no_label_file(points: Path, tmp_path: Path) -> None:
    out = tmp_path / "chula"
    result = invoke("convert", "-d", points, "-f", "points", "--to", "chula", "--out", out)
    assert_one_line_error(result, f"{out}: class 'not a Chula class' (image c)")
    assert not out.exists() and beside(out) == []  # not 2 of 3 label files


def test_convert_failing_half_way_keeps_the_earlier_output(points: Path, tmp_path: Path) -> None:
    out = tmp_path / "chula"
    (out / "Label").mkdir(parents=True)
    (out / "Label" / "earlier.txt").write_text("1 2 0\n")
    before = snapshot(out)
    result = invoke("convert", "-d", points, "-f", "points", "--to", "chula", "--out", out, "--exist-ok")
    assert_one_line_error(result, "not a Chula class")
    assert snapshot(out) == before and beside(out) == []


@pytest.mark.parametrize("n", [1, 2, 3])
def test_convert_failing_at_any_write_leaves_no_output(
    n: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for stem in STEMS:
        write_image(tmp_path / "voc" / "JPEGImages" / f"{stem}.png")
    dataset = Dataset(["RBC"], [
        AnnotatedImage(tmp_path / "voc" / "JPEGImages" / f"{stem}.png", 64, 48, stem,
                       cells=Cells(boxes=[[1, 2, 30, 40]], labels=[0]))
        for stem in STEMS
    ])
    write_dataset(dataset, tmp_path / "voc", "voc")
    moves = fail_at_write(monkeypatch, n)
    out = tmp_path / "geojson"
    result = invoke("convert", "-d", tmp_path / "voc", "-f", "voc", "--to", "geojson", "--out", out)
    assert_one_line_error(result, "No space left on device")
    assert len(moves) == n and not out.exists() and beside(out) == []
