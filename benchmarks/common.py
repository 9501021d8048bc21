"""Shared plumbing of the benchmark scripts: machine facts, result files, resumable runs, step timing.

Every benchmark is one command that can be interrupted and run again with the same arguments: the
parts it has finished are recorded as small JSON files under its ``--out`` folder (:func:`once`),
training resumes from Lightning's ``last.ckpt`` (:func:`train_resumable`), and the result file
``benchmarks/results/<name>.json`` is written atomically with the machine, the date and the exact
command (:func:`write_result`).

Import this module before ``cytolens``: it sets the environment that keeps albumentations and the
Hugging Face hub off the network.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from cytolens.io.atomic import write_text  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
RESULTS = BENCHMARKS / "results"
"""Where result files go (``benchmarks/results/<name>.json``)."""
CLI = [sys.executable, "-c", "from cytolens.cli.main import run; run()"]
"""The ``cytolens`` command of this interpreter (not whichever is first on ``PATH``)."""

log = logging.getLogger("benchmarks")


def setup(threads: int = 2) -> None:
    """Log to stderr with timestamps and use ``threads`` torch threads (the benchmarks assume 2 cores)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(threads)


def machine() -> dict[str, Any]:
    """CPU model, cores (present and usable), torch threads and versions of the machine running the benchmark."""
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text().splitlines()
        cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), cpu)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def command() -> str:
    """The command line that started this process, as it would be typed."""
    return shlex.join(["python", *sys.argv])


def target(value: float | None, goal: float, higher_is_better: bool = True) -> dict[str, Any]:
    """A target record ``{value, target, met}``; ``met`` is ``None`` when the value is missing."""
    met = None if value is None else bool(value >= goal if higher_is_better else value <= goal)
    return {"value": value, "target": goal, "met": met}


def read_json(path: Path) -> Any:
    """The content of a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_json(path: Path, content: Any) -> None:
    """Write ``content`` as indented JSON, atomically."""
    write_text(path, json.dumps(content, indent=2, default=str) + "\n")


def write_result(
    name: str, figures: dict[str, Any], targets: dict[str, Any], folder: Path = RESULTS, **extra: Any
) -> Path:
    """Write ``<folder>/<name>.json`` with machine, date, command, figures and targets (met or not).

    Args:
        name: Benchmark name (the file stem).
        figures: The measured figures.
        targets: Target records from :func:`target`.
        folder: Output folder (the repository's ``benchmarks/results`` by default).
        **extra: More top-level entries (settings, notes, per-run details).

    Returns:
        The path written.

    """
    path = Path(folder) / f"{name}.json"
    write_json(
        path,
        {
            "benchmark": name,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": command(),
            "machine": machine(),
            "figures": figures,
            "targets": targets,
            **extra,
        },
    )
    log.info("wrote %s", path)
    return path


def run_child(arguments: list[str], env: dict[str, str] | None = None) -> tuple[Any, float]:
    """Run ``arguments`` (usually this script in a child mode) and return what it printed as JSON on its last
    stdout line, and its peak resident memory in GB (its own ``ru_maxrss``, from ``os.wait4``).

    Raises:
        SystemExit: If the child fails.

    """
    process = subprocess.Popen(arguments, stdout=subprocess.PIPE, env={**os.environ, **(env or {})})
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{shlex.join(arguments)} failed with exit code {process.returncode}")
    return json.loads(output.decode().strip().splitlines()[-1]), usage.ru_maxrss * 1024 / 1e9  # KiB on Linux


def once(path: Path, compute: Callable[[], Any]) -> Any:
    """The content of the JSON file ``path``; computed by ``compute()`` and saved there the first time.

    This is how a benchmark skips the parts it finished before an interruption.
    """
    path = Path(path)
    if path.is_file():
        log.info("already done: %s", path)
        return read_json(path)
    content = compute()
    write_json(path, content)
    return content


def train_resumable(recipe: Any, out: Path, max_steps: int = -1) -> Path:
    """Train ``recipe`` into ``out`` once: skip a finished run, resume an interrupted one from ``last.ckpt``.

    A finished run leaves ``out/trained.json`` (wall time of the last session, whether it resumed, epochs).

    Returns:
        The path of the trained model (``out/model.pt``).

    """
    from cytolens.training.train import train

    out = Path(out)

    def run() -> dict[str, Any]:
        resume = (out / "checkpoints" / "last.ckpt").is_file()
        log.info("%s %s (%d epochs)", "resuming" if resume else "training", out, recipe.epochs)
        start = time.perf_counter()
        # a run stopped before its first checkpoint left only logs/: start it afresh
        train(recipe, out, resume=resume, exist_ok=not resume, device="cpu", max_steps=max_steps, progress=False)
        seconds = round(time.perf_counter() - start, 1)
        log.info("trained %s in %.0f s", out, seconds)
        return {"seconds_last_session": seconds, "resumed": resume, "epochs": recipe.epochs}

    once(out / "trained.json", run)
    return out / "model.pt"


def smoke_recipe(recipe: Any) -> Any:
    """``recipe`` shrunk to check a script end to end: batches of 2, one epoch per stage (128-pixel point crops)."""
    return dataclasses.replace(
        recipe,
        points=recipe.points and dataclasses.replace(recipe.points, crop_size=128),
        batch_size=2,
        warmup_steps=2,
        val_every=1,
        stages=[dataclasses.replace(stage, epochs=1) for stage in recipe.stages],
    )


def seconds_per_step(recipe: Any, steps: int = 4) -> float:
    """Measured wall time of one training step of ``recipe`` (data, forward, backward, AdamW), auxiliary batch included.

    Runs ``steps`` steps after one warm-up step, outside Lightning, on the recipe's training data and
    current thread count; used to size a schedule to a time budget.
    """
    from torch.utils.data import DataLoader

    from cytolens.io.spec import load_data
    from cytolens.training.init import initial_model
    from cytolens.training.stages import InputSize
    from cytolens.training.tasks import task_components

    data = load_data(recipe.data, recipe.format, recipe.train_split)
    model, *_ = initial_model(recipe.init, recipe.architecture, data.classes, recipe.kwargs)
    components = task_components(recipe.task)
    size = InputSize(recipe.stages, components.base_size(recipe))
    module = components.module(model, recipe, data, size)
    loader = DataLoader(
        components.dataset(data, recipe, size, True),
        batch_size=recipe.batch_size,
        shuffle=True,
        collate_fn=components.collate,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = sum(module.losses(batch)["loss"] for batch in next(batches))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return float(sorted(times[1:])[len(times[1:]) // 2])


POINT_KEYS = (
    "precision",
    "recall",
    "f1",
    "mean_distance",
    "class_accuracy",
    "macro_f1",
    "weighted_f1",
    "tp",
    "fp",
    "fn",
)
"""The point figures a benchmark reports."""


def evaluate_points(
    model_path: Path, truth: Any, radius: float, ignore_unlabelled: bool = False, classifier: Path | None = None
) -> dict[str, Any]:
    """Point-detection figures of a trained model on ``truth`` at matching radius ``radius`` (pixels); with
    ``classifier``, of the pipeline in which that patch classifier names each cell the model finds.

    The model predicts each image once. With ``ignore_unlabelled``, the figures are also given with
    predicted centres on unlabelled cells of partially labelled images counting neither as right nor as
    wrong, under ``unlabelled_cells_ignored`` (with ``ignored_detections``, how many were left out).

    Returns:
        :data:`POINT_KEYS`, the ``per_class`` and ``per_image`` tables, the model's decoding
        ``thresholds``, the number of ``images`` and the wall ``seconds``; and ``unlabelled_cells_ignored``.

    """
    from cytolens.inference.evaluate import predict_dataset
    from cytolens.inference.model import load_model
    from cytolens.metrics import evaluate_datasets

    model = load_model(model_path, device="cpu", classifier=classifier)
    start = time.perf_counter()
    predictions = predict_dataset(model, truth, progress=False)
    points = evaluate_datasets(predictions, truth, radius)["details"]["points"]
    result = {
        **{key: points[key] for key in POINT_KEYS},
        "radius": radius,
        "images": len(truth),
        "thresholds": model.thresholds.to_dict(),
        "per_class": points["per_class"],
        "per_image": points["per_image"],
    }
    if ignore_unlabelled:
        figures = evaluate_datasets(predictions, truth, radius, ignore_unlabelled=True)
        result["unlabelled_cells_ignored"] = {
            **{key: figures["details"]["points"][key] for key in POINT_KEYS},
            "ignored_detections": figures["ignored_detections"],
        }
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result
