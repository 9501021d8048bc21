"""Whole slides at scale (GitHub issue 13): memory, speed, workers, resume and backends of ``cytolens slide``.

    python benchmarks/slide_scale.py [--sizes 4000 10000 20000] [--out DIR] [--histology-model FILE] [--smoke]
                                     [--skip-backends]

Synthetic whole slides: real fields laid edge to edge (``slides_synthetic.write_synthetic_slide``: pyramidal
OME-TIFFs, 256-pixel JPEG tiles, 4 levels, the fields outside the inscribed ellipse left as glass for the tissue
mask to skip) to ``--sizes`` pixels a side:

- *smear*: ``bccd-txl`` fields (640 x 480; test, then val and train, in name order), at the ``blood-cells`` model's
  µm/px, predicted with ``blood-cells``;
- *histology*: CRCHistoPhenotypes fields (500 x 500, ``train/``), at the nucleus model's µm/px (0.55 when its card
  states none), predicted with ``--histology-model`` (default: the model ``crchisto_points.py`` last wrote, as
  named in its result file); left out, and said so, when there is none.

Every run is ``cytolens slide SLIDE --json`` in its own process; its peak resident memory is polled (psutil, every
0.1 s) over the process and its children (the workers), summed, and the main process's own peak is its
``ru_maxrss``. The 1-minute load average is recorded before each run and at its highest during it: the run itself
accounts for about 2 on 2 cores, and a run that saw more than :data:`SHARED_LOAD` shared the machine (its seconds
then say little: two-thread inference waits for its slower thread, so other work slows it more than its share).
Parts:

- ``sizes``: per kind and size, one process, seconds (wall, start-up included), level-0 megapixels per second
  (of the whole slide, glass included; and as the run measures itself, model loaded), cells, peak memory;
- ``workers``: the smear at the middle size with ``--workers 2`` against 1: the ratio of megapixels per second,
  and whether the cells are the same;
- ``resume``: the smear at the middle size killed (SIGKILL, with its workers) once half its regions are written,
  then run again with ``--resume``: cells lost, added or duplicated against the uninterrupted run (cells compared by
  position to 0.01 pixel and class);
- ``backends``: the smear at the smallest size with ``--backend torch``, ``onnx`` and ``openvino`` (a backend
  the model cannot run with is left out, with its one-line error).

Finished parts are kept as JSON files in ``--out`` (and the slides in ``--out/slides``) and skipped when the
command runs again. ``--smoke`` checks the script on small slides (1,000 and 2,000 pixels), its result in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

import common
from cytolens.inference.model import load_model
from cytolens.io.images import read_image
from slides_synthetic import write_synthetic_slide

NAME = "slide_scale"
DATASETS = common.REPO.parent / "shared" / "datasets"
SMEAR_FIELDS = DATASETS / "bccd-txl" / "images"
HISTOLOGY_FIELDS = DATASETS / "crchisto" / "train"
FIELDS = 24
"""Distinct fields a slide cycles through."""
HISTOLOGY_MPP = 0.55
"""µm/px of CRCHistoPhenotypes (20x), for a nucleus model whose card states none."""
SMEAR_MODEL = "blood-cells"
BACKENDS = ("torch", "onnx", "openvino")
CLI = [sys.executable, "-c", "from cytolens.cli.main import run; run()"]
SHARED_LOAD = 3.0
"""Highest 1-minute load average during a run above which other work shared the 2 cores with it."""


def smear_fields() -> list[np.ndarray]:
    """The first :data:`FIELDS` ``bccd-txl`` fields: test, then val and train, each in name order."""
    files = [file for split in ("test", "val", "train") for file in sorted((SMEAR_FIELDS / split).glob("*.jpg"))]
    return [read_image(file) for file in files[:FIELDS]]


def histology_fields() -> list[np.ndarray]:
    """The first :data:`FIELDS` CRCHistoPhenotypes training fields, in name order."""
    return [read_image(file) for file in sorted(HISTOLOGY_FIELDS.glob("img*/img*.png"))[:FIELDS]]


def histology_model(given: Path | None) -> Path | None:
    """``given``, else the model ``crchisto_points.py`` last wrote (when its file is still there)."""
    if given is not None:
        return given
    result = common.RESULTS / "crchisto_points.json"
    model = Path(common.read_json(result).get("model", "")) if result.is_file() else None
    return model if model is not None and model.is_file() else None


def slide_file(folder: Path, kind: str, size: int, model: str | Path) -> Path:
    """The synthetic slide of ``kind`` (``smear``/``histology``) and ``size``, written once into ``folder``."""
    path = folder / f"{kind}-{size}.ome.tif"
    if path.is_file():
        return path
    mpp = load_model(model, "cpu", "torch").card.input.mpp or (HISTOLOGY_MPP if kind == "histology" else None)
    fields = smear_fields() if kind == "smear" else histology_fields()
    common.log.info("writing %s (%d x %d at %s µm/px)", path, size, size, mpp)
    staging = path.with_name(f".{path.name}.tmp")
    write_synthetic_slide(staging, fields, (size, size), mpp)
    staging.replace(path)
    return path


def tree_memory(process: psutil.Process) -> int:
    """Resident bytes of ``process`` and its children, summed (processes that end meanwhile count as 0)."""
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:  # it has ended
        return 0
    total = 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            continue
    return total


def run_slide(arguments: list[str], kill_when: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Run ``cytolens slide ARGUMENTS --json``: seconds, peak memory (process tree, and the main process alone),
    the 1-minute load average before and at its highest during the run, exit code and the JSON summary; SIGKILL the
    process tree as soon as ``kill_when()`` is true.
    """
    command = [*CLI, "slide", *arguments, "--json"]
    load_before = os.getloadavg()
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    process, peak, load, done = psutil.Process(child.pid), [0], [load_before[0]], threading.Event()

    def poll() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], tree_memory(process))
            load[0] = max(load[0], os.getloadavg()[0])
            if kill_when is not None and kill_when():
                os.killpg(child.pid, signal.SIGKILL)
                return

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    stdout, stderr = child.stdout.read(), child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    done.set()
    poller.join()
    code = os.waitstatus_to_exitcode(status)
    errors = [line for line in stderr.decode().splitlines() if line.startswith("error:")]
    result = {"command": " ".join(["cytolens", "slide", *arguments, "--json"]), "exit_code": code,
              "seconds": round(seconds, 2), "peak_rss_gb": round(peak[0] / 1e9, 3),
              "peak_rss_main_gb": round(usage.ru_maxrss * 1024 / 1e9, 3), "error": errors[0] if errors else None,
              "load_average_before": [round(value, 2) for value in load_before],
              "load_average_1min_max": round(load[0], 2)}
    if code == 0:
        result["summary"] = json.loads(stdout.decode())
    elif kill_when is None:
        common.log.warning("%s failed (%d): %s", result["command"], code, stderr.decode()[-2000:])
    return result


def figures_of(run: dict[str, Any]) -> dict[str, Any]:
    """Megapixels, megapixels per second, cells and memory of one successful run."""
    slide = run["summary"]["slides"][0]
    megapixels = slide["shape"][0] * slide["shape"][1] / 1e6
    return {
        "megapixels": round(megapixels, 1), "seconds": run["seconds"],
        "megapixels_per_second": round(megapixels / run["seconds"], 3),
        "megapixels_per_second_in_run": slide["megapixels_per_second"],
        "cells": sum(slide["counts"].values()), "counts": slide["counts"], "regions_run": slide["regions_run"],
        "regions": slide["regions"], "tissue_mm2": slide["tissue_mm2"], "peak_rss_gb": run["peak_rss_gb"],
        "peak_rss_main_gb": run["peak_rss_main_gb"], "load_average_1min_max": run.get("load_average_1min_max"),
    }


def measured(out: Path, name: str, slide: Path, model: str | Path, *options: str) -> dict[str, Any]:
    """One run of ``model`` on ``slide`` (kept as ``out/<name>.json``): its record and figures."""

    def compute() -> dict[str, Any]:
        run = run_slide([str(slide), "-m", str(model), "--out", str(out / "runs" / name), "--exist-ok", *options])
        return {**run, "figures": figures_of(run) if run["exit_code"] == 0 else None}

    return common.once(out / f"{name}.json", compute)


def cell_keys(folder: Path) -> Counter:
    """The cells of a run's ``cells.parquet``, each as (slide, x, y, class), positions rounded to 0.01 pixel."""
    import pyarrow.parquet as pq

    table = pq.read_table(folder / "cells.parquet").to_pydict()
    columns = list(table)
    slides = table.get("slide", [""] * len(table[columns[0]]))
    return Counter(zip(slides, np.round(table["x"], 2), np.round(table["y"], 2), table["class"], strict=True))


def resume_part(out: Path, slide: Path, full: dict[str, Any], full_folder: Path) -> dict[str, Any]:
    """The slide killed (SIGKILL) once half its regions are written, then resumed, against the uninterrupted run
    (``full``, written to ``full_folder``): cells lost, added and duplicated.
    """

    def compute() -> dict[str, Any]:
        folder = out / "runs" / "resumed"
        half = max(1, full["figures"]["regions_run"] // 2)

        def parts() -> int:
            return len(list(folder.parent.glob(f".partial-{folder.name}/parts/*/region-*.parquet")))

        arguments = [str(slide), "-m", SMEAR_MODEL, "--out", str(folder), "--exist-ok"]
        killed = run_slide(arguments, kill_when=lambda: parts() >= half)
        done = parts()
        resumed = run_slide([*arguments, "--resume"])
        record = {"killed_after_seconds": killed["seconds"], "killed_exit_code": killed["exit_code"],
                  "regions_done_when_killed": done, "resumed": resumed}
        if resumed["exit_code"] != 0:
            return record
        expected, got = cell_keys(full_folder), cell_keys(folder)
        slide_summary = resumed["summary"]["slides"][0]
        return {
            **record, "regions_resumed": slide_summary["regions_resumed"], "regions_run": slide_summary["regions_run"],
            "cells_uninterrupted": sum(expected.values()), "cells_resumed": sum(got.values()),
            "cells_lost": sum((expected - got).values()), "cells_added": sum((got - expected).values()),
            "cells_duplicated": sum(count - 1 for count in got.values() if count > 1)
            - sum(count - 1 for count in expected.values() if count > 1),
        }

    return common.once(out / "resume.json", compute)


def shared_note(runs: dict[str, dict[str, Any]]) -> str:
    """Whether the runs (figures by name) had the machine to themselves, by the highest load average each saw."""
    loads = {name: figures["load_average_1min_max"] for name, figures in runs.items()
             if figures.get("load_average_1min_max") is not None}
    shared = [f"{name} ({load})" for name, load in loads.items() if load > SHARED_LOAD]
    if not shared:
        return (f"no run saw a 1-minute load average above {SHARED_LOAD} (highest {max(loads.values(), default=None)}; "
                "a run itself accounts for about 2): the 2 cores were not shared")
    return (f"shared 2-core machine: these runs saw a 1-minute load average above {SHARED_LOAD} (a run itself accounts "
            f"for about 2), so their seconds and speedups are of a loaded machine: {', '.join(shared)}")


def run(args: argparse.Namespace) -> Path:
    """Every part; the result file."""
    out = args.out / ("smoke" if args.smoke else "full")
    sizes = [1000, 2000] if args.smoke else sorted(args.sizes)
    slides = out / "slides"
    slides.mkdir(parents=True, exist_ok=True)
    nuclei = histology_model(args.histology_model)
    kinds = {"smear": SMEAR_MODEL, **({"histology": nuclei} if nuclei is not None else {})}
    notes = [] if nuclei is not None else ["histology left out: no nucleus model (give --histology-model)"]

    by_size: dict[str, dict[str, Any]] = {}

    def size_part(kind: str, size: int) -> None:
        model = kinds[kind]
        record = measured(out, f"{kind}-{size}", slide_file(slides, kind, size, model), model)
        by_size[f"{kind}-{size}"] = record["figures"] or {"error": record["error"]}

    for size in sizes[:-1]:
        size_part("smear", size)
    middle = sizes[len(sizes) // 2]
    smear = slide_file(slides, "smear", middle, SMEAR_MODEL)
    one = measured(out, f"smear-{middle}", smear, SMEAR_MODEL)
    two = measured(out, f"smear-{middle}-workers2", smear, SMEAR_MODEL, "--workers", "2")
    workers = {"slide": smear.name, "one": one["figures"], "two": two["figures"] or {"error": two["error"]}}
    if one["figures"] and two["figures"]:
        workers["speedup"] = round(two["figures"]["megapixels_per_second"] / one["figures"]["megapixels_per_second"], 3)
        workers["cells_identical"] = cell_keys(out / "runs" / f"smear-{middle}") == cell_keys(
            out / "runs" / f"smear-{middle}-workers2")
    resume = resume_part(out, smear, one, out / "runs" / f"smear-{middle}")
    smallest = slide_file(slides, "smear", sizes[0], SMEAR_MODEL)
    backends = {}
    for backend in [] if args.skip_backends else BACKENDS:
        record = measured(out, f"smear-{sizes[0]}-{backend}", smallest, SMEAR_MODEL, "--backend", backend)
        backends[backend] = record["figures"] or {"left_out": record["error"]}
    size_part("smear", sizes[-1])  # the longest runs last: the other parts are done first
    for size in sizes if "histology" in kinds else []:
        size_part("histology", size)

    peaks = [figures["peak_rss_gb"] for figures in by_size.values() if "peak_rss_gb" in figures]
    smear_peaks = [by_size[f"smear-{size}"].get("peak_rss_gb") for size in sizes]
    figures = {
        "sizes": by_size, "workers": workers, "resume": resume, "backends": backends,
        "peak_rss_gb_max": max(peaks, default=None),
        "smear_peak_rss_growth_smallest_to_largest": None if None in smear_peaks else
        round(smear_peaks[-1] / smear_peaks[0], 3),
    }
    targets = {
        "issue 13: peak resident memory <= 2 GB at every size": common.target(max(peaks, default=None), 2.0, False),
        "issue 13: memory flat across sizes (largest / smallest smear peak <= 1.25)": common.target(
            figures["smear_peak_rss_growth_smallest_to_largest"], 1.25, False),
        "issue 13: resume after a kill loses no cell": common.target(resume.get("cells_lost"), 0, False),
        "issue 13: resume after a kill duplicates no cell": common.target(
            None if "cells_added" not in resume else resume["cells_added"] + max(0, resume["cells_duplicated"]), 0,
            False),
        "issue 13: 2 workers faster than 1 (speedup > 1)": common.target(workers.get("speedup"), 1.0),
    }
    notes.append(shared_note({**by_size, "smear-workers2": workers["two"],
                              **{f"smear-{sizes[0]}-{name}": record for name, record in backends.items()}}))
    settings = {"sizes": sizes, "fields": FIELDS, "models": {kind: str(model) for kind, model in kinds.items()}}
    return common.write_result(NAME, figures, targets, folder=out if args.smoke else common.RESULTS,
                               settings=settings, notes=notes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4000, 10000, 20000], help="Slide sides in pixels.")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "cytolens-slide-scale")
    parser.add_argument("--histology-model", type=Path, default=None, help="Nucleus point model for histology.")
    parser.add_argument("--smoke", action="store_true", help="Small slides, to check the script.")
    parser.add_argument("--skip-backends", action="store_true", help="Leave out the backends part.")
    args = parser.parse_args(argv)
    common.setup()
    run(args)


if __name__ == "__main__":
    sys.exit(main())
