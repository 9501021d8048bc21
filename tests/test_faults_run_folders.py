"""Run folders (issue 8): an output folder holds one whole run, never a mix of two; refusals are one line.

``predict`` and ``convert`` write through one guard (``cytolens.io.output_run``): an earlier run is refused
unless ``--exist-ok`` (then replaced whole), a second run at once is refused, an output overlapping the
input is refused; ``train`` refuses an earlier run unless ``--resume`` or ``--exist-ok``. Also the number
options of these commands (``--score-threshold``, ``--max-steps``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner, Result

from cytolens.cli.main import app
from cytolens.errors import DataError
from cytolens.io.output_run import OutputRun
from helpers import write_image
from tiny_detector import tiny_detector

pytestmark = pytest.mark.usefixtures("one_thread")

STEMS = ["a", "b", "c"]

VOC_XML = """<annotation>
  <folder>JPEGImages</folder>
  <filename>{stem}.png</filename>
  <path>/somewhere/{stem}.png</path>
  <size><width>64</width><height>48</height><depth>3</depth></size>
  <object>
    <name>RBC</name><pose>Unspecified</pose><truncated>1</truncated><difficult>0</difficult>
    <bndbox><xmin>5</xmin><ymin>6</ymin><xmax>20</xmax><ymax>30</ymax></bndbox>
  </object>
</annotation>
"""


def invoke(*args: object) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def predict(checkpoint: Path, out: Path, *args: object) -> Result:
    """``cytolens predict`` keeping every detection (the untrained model's scores are low)."""
    return invoke("predict", *args, "--model", checkpoint, "--out", out, "--score-threshold", "0")


def assert_one_line_error(result: Result, *fragments: str) -> None:
    """Exit code 1, exactly one stderr line ``error: ...`` holding ``fragments``, no traceback."""
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert "Traceback" not in result.output


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) and its bytes."""
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def beside(out: Path) -> list[str]:
    """What the guard may leave beside ``out``: staging, a moved-aside run, a lock file."""
    return sorted(path.name for path in out.parent.iterdir() if path.name.startswith(".") and out.name in path.name)


def covered_images(out: Path) -> dict[str, set[str]]:
    """The image stems each file of a predict run covers; all equal when the run is whole."""
    coco = json.loads((out / "predictions.coco.json").read_text())
    return {
        "cells.csv": {Path(image).stem for image in pd.read_csv(out / "cells.csv")["image"]},
        "counts.csv": {Path(image).stem for image in pd.read_csv(out / "counts.csv")["image"]},
        "predictions.coco.json": {Path(image["file_name"]).stem for image in coco["images"]},
        "overlays": {path.stem for path in (out / "overlays").iterdir()},
        "geojson": {path.stem for path in (out / "geojson").iterdir()},
        "napari": {path.stem for path in (out / "napari").iterdir()},
    }


def assert_whole_run(out: Path, stems: list[str]) -> None:
    """``out`` holds one run over exactly ``stems``, with nothing half written in or beside it."""
    assert covered_images(out) == dict.fromkeys(covered_images(out), set(stems))
    assert not [path for path in out.rglob("*") if path.name.startswith(".")]
    assert beside(out) == []


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_detector(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    for stem in STEMS:
        write_image(tmp_path / "images" / f"{stem}.png")
    return tmp_path / "images"


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    """A VOC source folder whose XML holds fields cytolens does not keep (pose, truncated, path)."""
    root = tmp_path / "voc"
    for stem in STEMS:
        write_image(root / "JPEGImages" / f"{stem}.png")
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(VOC_XML.format(stem=stem))
    return root


# predict: earlier runs, concurrent runs, overlapping folders


def test_predict_refuses_an_earlier_run_and_leaves_it_untouched(checkpoint: Path, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert predict(checkpoint, out, images).exit_code == 0
    before = snapshot(out)
    result = predict(checkpoint, out, images / "a.png")
    assert_one_line_error(result, str(out), "already exists and is not empty", "--exist-ok")
    assert snapshot(out) == before
    assert beside(out) == []


def test_exist_ok_replaces_the_whole_run(checkpoint: Path, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert predict(checkpoint, out, images).exit_code == 0
    assert_whole_run(out, STEMS)
    result = predict(checkpoint, out, images / "b.png", "--exist-ok")
    assert result.exit_code == 0, result.output
    assert_whole_run(out, ["b"])  # not 1 image in cells.csv beside 3 old overlays


def test_a_run_where_every_image_fails_replaces_the_whole_run(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    good = write_image(tmp_path / "good" / "a.png")
    assert predict(checkpoint, out, good).exit_code == 0
    bad = tmp_path / "bad" / "broken.png"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG not really")
    result = predict(checkpoint, out, bad, "--exist-ok")
    assert_one_line_error(result, str(bad))
    assert sorted(snapshot(out)) == ["cells.csv", "counts.csv"]  # no overlay or COCO file of the earlier run
    assert pd.read_csv(out / "counts.csv").empty


def test_an_empty_out_folder_is_taken(checkpoint: Path, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    result = predict(checkpoint, out, images)
    assert result.exit_code == 0, result.output
    assert_whole_run(out, STEMS)


def test_a_second_run_into_the_same_out_is_refused_while_the_first_runs(
    checkpoint: Path, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    (tmp_path / "alias").symlink_to(tmp_path, target_is_directory=True)
    with OutputRun(out) as first:
        result = predict(checkpoint, tmp_path / "alias" / "out", images)  # another name of the same folder
        assert_one_line_error(result, "another cytolens run is writing it")
        first.path.mkdir()
        (first.path / "cells.csv").write_text("first\n")
    assert snapshot(out) == {"cells.csv": b"first\n"}  # the first run is whole; the second wrote nothing
    assert beside(out) == []


def test_the_lock_dies_with_a_killed_run_and_the_next_run_cleans_up(
    checkpoint: Path, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    script = (
        "import sys, time\n"
        "from cytolens.io.output_run import OutputRun\n"
        "with OutputRun(sys.argv[1]) as run:\n"
        "    run.path.mkdir()\n"
        "    (run.path / 'cells.csv').write_text('half')\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "ready\n"
        assert_one_line_error(predict(checkpoint, out, images), "another cytolens run is writing it")
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs
        holder.communicate()
    assert holder.returncode == -signal.SIGKILL
    assert not out.exists() and ".partial-out" in beside(out)
    result = predict(checkpoint, out, images)
    assert result.exit_code == 0, result.output
    assert "deleted the unfinished output of a killed run" in result.stderr
    assert_whole_run(out, STEMS)


def test_predict_refuses_an_out_holding_its_input_or_the_current_folder(
    checkpoint: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    assert predict(checkpoint, out, images).exit_code == 0
    overlay = out / "overlays" / "a.png"
    before = snapshot(out)
    assert_one_line_error(predict(checkpoint, out, overlay, "--exist-ok"), str(out), f"holds the input {overlay}")
    assert_one_line_error(predict(checkpoint, overlay, overlay, "--exist-ok"), "is an input of this run")
    monkeypatch.chdir(out)
    assert_one_line_error(predict(checkpoint, Path("."), images, "--exist-ok"), "is the current folder")
    assert snapshot(out) == before


# convert: the source is never written, the output is whole


def test_convert_onto_its_own_source_is_refused_and_the_source_kept(voc: Path, tmp_path: Path) -> None:
    before = snapshot(voc)
    for out in (voc, voc / "Annotations", voc / "converted"):
        result = invoke("convert", "-d", voc, "-f", "voc", "--to", "voc", "--out", out, "--exist-ok")
        assert_one_line_error(result, str(out), "choose another --out")
    link = tmp_path / "link-to-voc"
    link.symlink_to(voc, target_is_directory=True)
    result = invoke("convert", "-d", voc, "-f", "voc", "--to", "voc", "--out", link, "--exist-ok")
    assert_one_line_error(result, str(link), "is an input of this run")
    assert snapshot(voc) == before  # pose, truncated, path still there
    assert "<pose>Unspecified</pose>" in (voc / "Annotations" / "a.xml").read_text()


def test_convert_refuses_an_out_holding_the_source_or_its_images(voc: Path, tmp_path: Path) -> None:
    coco = tmp_path / "coco" / "annotations.json"
    assert invoke("convert", "-d", voc, "-f", "voc", "--to", "coco", "--out", coco).exit_code == 0
    result = invoke("convert", "-d", coco, "-f", "coco", "--to", "voc", "--out", coco.parent, "--exist-ok")
    assert_one_line_error(result, str(coco.parent), f"holds the input {coco}")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"format": "voc", "root": "voc"}))
    result = invoke("convert", "-d", spec, "--to", "coco", "--out", tmp_path, "--exist-ok")
    assert_one_line_error(result, "holds the input")
    assert (voc / "JPEGImages" / "a.png").is_file() and coco.is_file()


def test_convert_refuses_an_earlier_output_unless_exist_ok(voc: Path, tmp_path: Path) -> None:
    out = tmp_path / "points"
    assert invoke("convert", "-d", voc, "-f", "voc", "--to", "geojson", "--out", out).exit_code == 0
    (out / "notes.txt").write_text("from an earlier run")
    before = snapshot(out)
    result = invoke("convert", "-d", voc, "-f", "voc", "--to", "geojson", "--out", out)
    assert_one_line_error(result, str(out), "already exists and is not empty")
    assert snapshot(out) == before
    result = invoke("convert", "-d", voc, "-f", "voc", "--to", "geojson", "--out", out, "--exist-ok")
    assert result.exit_code == 0, result.output
    assert sorted(snapshot(out)) == [f"{stem}.geojson" for stem in STEMS]  # replaced whole
    assert beside(out) == []


def test_convert_to_a_single_file_keeps_its_suffix_and_relative_image_names(voc: Path, tmp_path: Path) -> None:
    out = tmp_path / "annotations.json"
    result = invoke("convert", "-d", voc, "-f", "voc", "--to", "coco", "--out", out)
    assert result.exit_code == 0, result.output
    assert out.is_file()  # the staging file had the same suffix, so the writer wrote a file, not a folder
    names = [image["file_name"] for image in json.loads(out.read_text())["images"]]
    assert names == [f"voc/JPEGImages/{stem}.png" for stem in STEMS]  # relative to the folder it was moved to
    assert beside(out) == []


def test_the_guard_refuses_a_folder_it_cannot_write(tmp_path: Path) -> None:
    parent = tmp_path / "file"
    parent.write_text("not a folder")
    with pytest.raises(DataError, match="cannot write here"), OutputRun(parent / "out"):
        pass


def test_a_run_that_wrote_nothing_leaves_an_empty_folder_and_no_lock_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with OutputRun(out):
        assert beside(out) == [".out.lock"]
    assert beside(out) == [] and os.path.isdir(out)


# train: an earlier run is continued or replaced, never mixed


@pytest.fixture
def earlier_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"earlier")
    (run / "model.pt").write_bytes(b"earlier")
    return run


def test_train_refuses_an_earlier_run_before_training(voc: Path, earlier_run: Path) -> None:
    before = snapshot(earlier_run)
    result = invoke("train", "--data", voc, "--format", "voc", "--task", "boxes", "--out", earlier_run)
    assert_one_line_error(result, str(earlier_run), "--resume", "--exist-ok")
    assert snapshot(earlier_run) == before


def test_train_passes_exist_ok_and_no_step_limit_to_training(
    voc: Path, earlier_run: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cytolens.training.train

    calls = []

    def fake_training(recipe: object, out: Path, **options: object) -> Path:
        calls.append(options)
        return checkpoint

    monkeypatch.setattr(cytolens.training.train, "train", fake_training)
    result = invoke("train", "--data", voc, "--format", "voc", "--task", "boxes", "--out", earlier_run, "--exist-ok")
    assert result.exit_code == 0, result.output
    assert calls[0]["exist_ok"] is True and calls[0]["resume"] is False and calls[0]["max_steps"] == -1


# the number options of these commands


@pytest.mark.parametrize("value", ["nan", "2", "-1", "inf"])
def test_score_threshold_outside_0_1_is_a_usage_error(value: str, images: Path, tmp_path: Path) -> None:
    result = invoke("predict", images, "--out", tmp_path / "out", "--score-threshold", value)
    assert result.exit_code == 2, result.output
    assert "--score-threshold" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["0", "-5"])
def test_max_steps_below_1_is_a_usage_error(value: str, voc: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke("train", "--data", voc, "--format", "voc", "--out", out, "--max-steps", value)
    assert result.exit_code == 2, result.output
    assert "--max-steps" in result.stderr and "Traceback" not in result.output
    assert not out.exists()
