"""BCCD blood-cell detection (GitHub issue 3): accuracy, CPU speed and memory, training time, YOLOv8n side by side.

    python benchmarks/bccd_detection.py [--model blood-cells] [--out DIR] [--limit N]
        [--skip-speed] [--skip-yolo] [--train-minutes X] [--repeats 3]

- Accuracy on the BCCD test split (72 images) with ``evaluate_model``: mAP@0.5 overall and per class,
  mAP@[.5:.95], count MAE per class (counts at the model's score threshold), with each backend (torch and,
  when installed, ONNX Runtime) so that their agreement is checked too.
- Speed on this machine's CPU (``--threads``, default 2): images/s end to end from the JPEG file to the
  detections (``model.predict(paths)``: decoding, resizing, network, post-processing), at batch 1, 2, 4
  and 8, for both backends; each configuration runs in its own process, after a warm-up, timed over
  ``--repeats`` passes (the median), and reports its peak resident memory (``ru_maxrss``).
- Ultralytics YOLOv8n (random init from ``yolov8n.yaml``, fully offline; needs the ``[bench]`` extra),
  on the same images at imgsz 640 and batch 1 with the same thread count, in its own process.
- Training wall time of the recipe: ``--train-minutes``, else the checkpoint's ``training_minutes``.

Finished parts are kept as JSON files in ``--out/<model sha256[:12]>-<images>/`` and skipped when the
command runs again (delete the folder to measure again). The results go to
``benchmarks/results/bccd_detection.json`` (with ``--limit``, to ``--out`` instead: a partial run is only
a check of the script).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
from cytolens.data.annotations import Dataset
from cytolens.data.spec import load_data
from cytolens.errors import CytolensError
from cytolens.inference.onnx_boxes import file_digest
from cytolens.models.checkpoint import read_checkpoint
from cytolens.models.registry import resolve_model

NAME = "bccd_detection"
DATA = common.REPO.parent / "shared" / "datasets" / "bccd"
BATCHES = (1, 2, 4, 8)
BACKENDS = ("torch", "onnx")
YOLO_IMGSZ = 640
TARGETS = {"map50": 0.92, "WBC": 0.97, "RBC": 0.86, "Platelets": 0.88, "images_per_s": 10.0, "train_minutes": 90.0}
PUBLISHED = {
    "YOLOv8n": {"map50": 0.904},
    "YOLOv7": {"map50": 0.906, "WBC": 0.983, "RBC": 0.859, "Platelets": 0.876},
}


def test_split(data: Path, limit: int | None) -> Dataset:
    """The BCCD test split, or its first ``limit`` images."""
    truth = load_data(data, "voc", "test")
    if limit:
        truth.images = truth.images[:limit]
    return truth


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports ``ru_maxrss`` in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def backends_for(model: str) -> list[str]:
    """``torch``, and ``onnx`` when ``backend="auto"`` picks it for ``model`` on the CPU (the last is the default)."""
    from cytolens.inference.model import load_model

    return ["torch", "onnx"] if load_model(model, device="cpu").backend == "onnx" else ["torch"]


def accuracy(model: str, truth: Dataset, backend: str) -> dict[str, Any]:
    """mAP@0.5 (overall, per class), mAP@[.5:.95], count MAE (overall, per class) of ``model`` with ``backend``."""
    from cytolens.inference.evaluate import evaluate_model
    from cytolens.inference.model import load_model

    cell_model = load_model(model, device="cpu", backend=backend)
    start = time.perf_counter()
    figures, _ = evaluate_model(cell_model, truth, progress=False)
    per_class = figures["per_class"]
    return {
        "backend": cell_model.backend,
        "images": len(truth),
        "map50": figures["map50"],
        "map50_95": figures["map50_95"],
        "count_mae": figures["count_mae"],
        "score_threshold": figures["score_threshold"],
        "per_class": {
            name: {key: values.get(key) for key in ("ap50", "ap50_95", "count_mae", "predicted", "true")}
            for name, values in per_class.items()
        },
        "seconds": round(time.perf_counter() - start, 1),
    }


def time_passes(run: Any, files: list[str], repeats: int) -> dict[str, Any]:
    """Time ``run(files)`` ``repeats`` times after a warm-up on the first two files: images/s of the median pass."""
    run(files[:2])
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(files)
        passes.append(time.perf_counter() - start)
    seconds = statistics.median(passes)
    return {
        "images": len(files),
        "passes_s": [round(value, 3) for value in passes],
        "images_per_s": round(len(files) / seconds, 2),
        "ms_per_image": round(1000 * seconds / len(files), 1),
    }


def cytolens_worker(model: str, backend: str, batch: int, files: list[str], repeats: int) -> dict[str, Any]:
    """Speed and peak memory of ``model.predict(files, batch_size=batch)`` in this process."""
    from cytolens.inference.model import load_model

    cell_model = load_model(model, device="cpu", backend=backend)
    timing = time_passes(lambda paths: cell_model.predict(paths, batch_size=batch), files, repeats)
    return {"backend": cell_model.backend, "batch": batch, **timing}


def yolo_worker(files: list[str], repeats: int, threads: int) -> dict[str, Any]:
    """Speed and peak memory of a randomly initialised Ultralytics YOLOv8n at imgsz 640, batch 1, offline."""
    import torch
    from ultralytics import YOLO, settings

    settings.update({"sync": False})
    yolo = YOLO("yolov8n.yaml")

    def run(paths: list[str]) -> None:
        for path in paths:
            yolo.predict(path, imgsz=YOLO_IMGSZ, device="cpu", verbose=False, save=False)
        # Ultralytics sets torch to cpu_count - 1 threads when it sets up; compare on the same thread count
        torch.set_num_threads(threads)

    timing = time_passes(run, files, repeats)
    return {
        "model": "yolov8n.yaml (random init)",
        "version": importlib.metadata.version("ultralytics"),
        "imgsz": YOLO_IMGSZ,
        "batch": 1,
        **timing,
    }


def in_subprocess(args: argparse.Namespace, worker: str, env: dict[str, str] | None = None, **options: Any) -> dict:
    """Run this script as ``--worker`` in a fresh process (its own peak memory) and return its JSON figures."""
    command = [
        sys.executable,
        __file__,
        "--worker",
        worker,
        "--model",
        args.model,
        "--data",
        str(args.data),
        "--threads",
        str(args.threads),
        "--repeats",
        str(args.repeats),
    ]
    if args.limit:
        command += ["--limit", str(args.limit)]
    for key, value in options.items():
        command += [f"--{key}", str(value)]
    common.log.info("measuring %s %s", worker, " ".join(f"{key}={value}" for key, value in options.items()))
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    if done.returncode != 0:
        raise CytolensError(f"{worker} worker failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    measured_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "measured_at": measured_at}


def yolo_env(folder: Path) -> dict[str, str]:
    """Environment keeping Ultralytics offline, with its settings in ``folder``."""
    return {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0", "YOLO_CONFIG_DIR": str(folder)}


def speed(args: argparse.Namespace, state: Path, backends: list[str]) -> dict[str, Any]:
    """Images/s and peak memory per backend and batch size, each measured in its own process."""
    from cytolens.inference.model import load_model

    if "onnx" in backends:  # build the ONNX file now, so that no measured process pays for the export
        load_model(args.model, device="cpu", backend="onnx").predict(test_files(args)[:1])
    results: dict[str, Any] = {}
    for backend in backends:
        runs = {
            str(batch): common.once(
                state / f"speed-{backend}-b{batch}.json",
                lambda backend=backend, batch=batch: in_subprocess(args, "cytolens", backend=backend, batch=batch),
            )
            for batch in BATCHES
        }
        best = max(runs.values(), key=lambda run: run["images_per_s"])
        results[backend] = {
            "batch1_images_per_s": runs["1"]["images_per_s"],
            "batch1_ms_per_image": runs["1"]["ms_per_image"],
            "best_batch": best["batch"],
            "best_images_per_s": best["images_per_s"],
            "peak_memory_mb": {batch: run["peak_memory_mb"] for batch, run in runs.items()},
            "runs": runs,
        }
    return results


def test_files(args: argparse.Namespace) -> list[str]:
    """The image files of the (limited) test split, in order."""
    return [str(image.path) for image in test_split(args.data, args.limit).images]


def training_minutes(args: argparse.Namespace, meta: dict[str, Any]) -> tuple[float | None, str]:
    """Training wall time in minutes and where it came from."""
    if args.train_minutes is not None:
        return args.train_minutes, "--train-minutes"
    if meta.get("training_minutes") is not None:
        return float(meta["training_minutes"]), "checkpoint meta training_minutes"
    return None, "unknown (give --train-minutes)"


def report(figures: dict[str, Any], targets: dict[str, Any]) -> None:
    """Print the figures and the targets as a few readable lines."""
    acc = figures["accuracy"]
    print(
        f"BCCD test ({acc['images']} images, {acc['backend']}): mAP@0.5 {acc['map50']:.3f}, "
        f"mAP@[.5:.95] {acc['map50_95']:.3f}, count MAE {acc['count_mae']:.2f}"
    )
    for name, values in acc["per_class"].items():
        print(
            f"  {name:10s} AP50 {values['ap50']:.3f}  AP50-95 {values['ap50_95']:.3f}  count MAE {values['count_mae']}"
        )
    for backend, values in (figures.get("speed") or {}).items():
        memory = max(values["peak_memory_mb"].values())
        print(
            f"{backend:6s} batch 1: {values['batch1_images_per_s']:.2f} images/s ({values['batch1_ms_per_image']} ms);"
            f" best batch {values['best_batch']}: {values['best_images_per_s']:.2f} images/s; peak RSS <= {memory} MB"
        )
    yolo = figures.get("yolov8n")
    if yolo:
        print(
            f"YOLOv8n imgsz {YOLO_IMGSZ} batch 1: {yolo['ms_per_image']} ms/image ({yolo['images_per_s']} images/s, "
            f"peak RSS {yolo['peak_memory_mb']} MB); ours/YOLOv8n images/s: {figures.get('speed_ratio_vs_yolov8n')}"
        )
    print(f"training: {figures['train_minutes']} min ({figures['train_minutes_source']})")
    for name, record in targets.items():
        status = {True: "met", False: "NOT met", None: "not measured"}[record["met"]]
        print(f"target {name}: {record['value']} (target {record['target']}): {status}")


def run_benchmark(args: argparse.Namespace) -> Path:
    """Measure everything not measured yet and write the result file."""
    path = resolve_model(args.model)
    meta, _ = read_checkpoint(path)
    digest = file_digest(path)
    truth = test_split(args.data, args.limit)
    state = args.out / f"{digest[:12]}-{len(truth)}"
    backends = backends_for(args.model)
    checks = {
        backend: common.once(
            state / f"accuracy-{backend}.json", lambda backend=backend: accuracy(args.model, truth, backend)
        )
        for backend in backends
    }
    headline = checks[backends[-1]]
    figures: dict[str, Any] = {"accuracy": headline}
    if len(checks) == 2:
        figures["backends_map50_difference"] = abs(checks["onnx"]["map50"] - checks["torch"]["map50"])
    if not args.skip_speed:
        figures["speed"] = speed(args, state, backends)
        ours = figures["speed"][headline["backend"]]
        figures["batch1_images_per_s"] = ours["batch1_images_per_s"]
        figures["best_images_per_s"] = ours["best_images_per_s"]
    if not args.skip_yolo:
        figures["yolov8n"] = common.once(
            state / "yolov8n.json", lambda: in_subprocess(args, "yolo", env=yolo_env(state / "ultralytics"))
        )
        if "speed" in figures:
            figures["speed_ratio_vs_yolov8n"] = round(
                figures["batch1_images_per_s"] / figures["yolov8n"]["images_per_s"], 3
            )
    figures["train_minutes"], figures["train_minutes_source"] = training_minutes(args, meta)
    per_class = headline["per_class"]
    targets = {
        "map50": common.target(headline["map50"], TARGETS["map50"]),
        **{
            f"ap50_{name}": common.target(per_class.get(name, {}).get("ap50"), TARGETS[name])
            for name in ("WBC", "RBC", "Platelets")
        },
        "batch1_images_per_s": common.target(figures.get("batch1_images_per_s"), TARGETS["images_per_s"]),
        "faster_than_yolov8n": common.target(figures.get("speed_ratio_vs_yolov8n"), 1.0),
        "train_minutes": common.target(figures["train_minutes"], TARGETS["train_minutes"], higher_is_better=False),
    }
    versions = {
        name: version(name) for name in ("cytolens", "torch", "torchvision", "onnxruntime", "onnx", "ultralytics")
    }
    report(figures, targets)
    return common.write_result(
        NAME,
        figures,
        targets,
        folder=args.out if args.limit else common.RESULTS,
        versions=versions,
        model={
            "source": args.model,
            "path": str(path),
            "sha256": digest,
            "architecture": meta["architecture"],
            "kwargs": meta["kwargs"],
            "input_size": meta.get("input_size"),
            "thresholds": meta.get("thresholds"),
        },
        settings={
            "threads": args.threads,
            "repeats": args.repeats,
            "images": len(truth),
            "batches": list(BATCHES),
            "input": "BCCD test JPEG files, 640x480",
        },
        accuracy_by_backend=checks,
        published=PUBLISHED,
    )


def version(package: str) -> str | None:
    """The installed version of ``package``, or None."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="blood-cells", help="bundled model name or checkpoint (default blood-cells)")
    parser.add_argument("--data", type=Path, default=DATA, help="the BCCD folder (VOC layout)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "cytolens-bench" / NAME,
        help="folder for finished parts (resumable runs) and results of --limit runs",
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N test images (a check of the script)")
    parser.add_argument("--skip-speed", action="store_true", help="skip the speed and memory measurements")
    parser.add_argument("--skip-yolo", action="store_true", help="skip Ultralytics YOLOv8n")
    parser.add_argument("--train-minutes", type=float, default=None, help="training wall time of the recipe")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every model (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per configuration (median; default 3)")
    parser.add_argument("--worker", choices=("cytolens", "yolo"), help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    common.setup(args.threads)
    try:
        if args.worker:
            files = test_files(args)
            if args.worker == "yolo":
                result = yolo_worker(files, args.repeats, args.threads)
            else:
                result = cytolens_worker(args.model, args.backend, args.batch, files, args.repeats)
            print(json.dumps({**result, "threads": args.threads, "peak_memory_mb": peak_memory_mb()}))
        else:
            run_benchmark(args)
    except CytolensError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
