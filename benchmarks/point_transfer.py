"""Transfer learning and auxiliary data for red-cell point detection (GitHub issue 4).

    python benchmarks/point_transfer.py --out DIR [--budget-minutes 110] [--smoke]

Target task: Chula RBC-12 cell detection, the 13 morphology classes merged into one (``RBC``), scored
by detection F1 at r = 12 px on the test split of ``configs/chula-split.yaml``, detections on cells
that the (partial) Chula labels leave out counting neither way (``evaluate --ignore-unlabelled``); ξ is
chosen on its val split. Every run trains with the recipe's ``ignore_unlabelled_cells``. Auxiliary
data: BCCD red cells (box centres), images scaled by :data:`AUX_SCALE` so that their cells (about 2.3
times larger) match the Chula cell size. Runs, all ``fcn-lite0`` with the ``rbc-morphology`` recipe's
targets and learning rates (crops of :data:`CROP` pixels):

- ``base``: a BCCD point model: ImageNet init, trained on BCCD ``trainval`` red cells from a copy
  of the images resized by :data:`AUX_SCALE` (``DIR/bccd-rbc-x0.44/``, VOC), no validation;
- for 10, 20, 40 and 100% of the Chula training images (nested seeded subsets):
  ``finetune-P`` (init from the base, the first :data:`FREEZE_BLOCKS` blocks frozen throughout)
  and ``imagenet-P`` (ImageNet init, nothing frozen);
- ``aux-gG-20``: ImageNet init on 20% of the Chula images plus BCCD red cells as auxiliary data,
  loss ``γ·L_target + L_aux`` for γ in 0.5, 1 and 5.

Every run gets the same number of optimizer steps (the base twice as many), sized so that the whole
benchmark fits ``--budget-minutes`` from step and inference times measured at the start
(``DIR/plan.json``; an auxiliary step costs about two). Run again with the same arguments after an
interruption: finished runs are skipped and an interrupted one resumes from its last checkpoint.
Results (rewritten after every run): ``benchmarks/results/point_transfer.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

import common
from cytolens.data.annotations import Dataset
from cytolens.data.cells import Cells
from cytolens.io.atomic import write_bytes, write_text
from cytolens.io.images import read_image
from cytolens.io.registry import write_dataset
from cytolens.io.spec import SplitSpec, load_data, load_spec, write_spec
from cytolens.training.recipe import Recipe
from cytolens.training.stages import Stage

NAME = "point_transfer"
RECIPE = common.REPO / "configs" / "rbc-morphology.yaml"
CHULA_SPEC = common.REPO / "configs" / "chula-split.yaml"
BCCD = common.REPO.parent / "shared" / "datasets" / "bccd"
RADIUS = 12.0
SEED = 0
AUX_SCALE = 0.44
"""BCCD image scale that brings its red cells to the Chula cell size."""
FRACTIONS = (10, 20, 40, 100)
"""Percentages of the Chula training images."""
GAMMAS = (0.5, 1.0, 5.0)
AUX_FRACTION = 20
"""Percentage of the Chula training images that the auxiliary-data runs use."""
FREEZE_BLOCKS = 3
"""Blocks frozen when fine-tuning from the base: the encoder's stem and first two stages (strides 2-4)."""
BASE_STEPS = 2
"""The base trains this many times the steps of the other runs (it is trained once and reused)."""
FINDING_TOLERANCE = 0.01
"""Fine-tuning on 20% "matches" training from ImageNet on the most data if its F1 is at most this lower."""
CROP = 192
"""Training crop side: smaller than the recipe's 256 so that the 13 runs get more steps in the budget."""
SMOKE = {"train": 8, "val": 2, "test": 3, "bccd": 8}


def chula_spec(out: Path, smoke: bool) -> Path:
    """``out/chula-rbc.yaml``: Chula RBC-12 with one class, nested ``trainP`` subsets, ``val`` and ``test``."""
    path = out / "chula-rbc.yaml"
    if path.is_file():
        return path
    source = load_spec(CHULA_SPEC)
    data = load_data(CHULA_SPEC)
    order = [str(key) for key in np.random.default_rng(SEED).permutation(data.splits["train"])]
    counts = {name: SMOKE[name] if smoke else len(data.splits[name]) for name in ("train", "val", "test")}
    order = order[: counts["train"]]
    lists = {f"train{p}": order[: max(1, round(len(order) * p / 100))] for p in FRACTIONS}
    lists.update(val=data.splits["val"][: counts["val"]], test=data.splits["test"][: counts["test"]])
    classes = {name: "RBC" for name in data.classes}
    write_spec(
        path, dataclasses.replace(source, name="chula-rbc-12 cells", classes=classes, splits=SplitSpec(lists=lists))
    )
    return path


def scaled_bccd(out: Path, smoke: bool) -> Path:
    """A VOC copy of BCCD ``trainval`` with red-cell boxes only, images resized by :data:`AUX_SCALE`."""
    folder = out / f"bccd-rbc-x{AUX_SCALE}"
    if (folder / "ImageSets" / "Main" / "trainval.txt").is_file():  # written last
        return folder
    data = load_data(BCCD, "voc", "trainval")
    rbc = data.classes.index("RBC")
    images = []
    for image in data.images[: SMOKE["bccd"] if smoke else None]:
        pixels = read_image(image.path)
        small = cv2.resize(pixels, None, fx=AUX_SCALE, fy=AUX_SCALE, interpolation=cv2.INTER_AREA)
        path = folder / "JPEGImages" / f"{image.image_id}.png"
        write_bytes(path, cv2.imencode(".png", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))[1].tobytes())
        cells = image.cells.box_cells()
        keep = cells.labels == rbc
        factors = [small.shape[1] / image.width, small.shape[0] / image.height] * 2
        images.append(
            dataclasses.replace(
                image,
                path=path,
                width=small.shape[1],
                height=small.shape[0],
                cells=Cells(boxes=cells.boxes[keep] * factors, labels=np.zeros(int(keep.sum()), dtype=np.int64)),
            )
        )
    write_text(folder / "LICENSE", (BCCD / "LICENSE").read_text())
    ids = [image.image_id for image in images]
    write_dataset(Dataset(["RBC"], images, {"trainval": ids}, "bccd-rbc", data.licence), folder, "voc")
    return folder


def run_names() -> list[str]:
    """The runs in the order they are trained (the base first: the fine-tuning runs start from it)."""
    names = ["base"]
    for fraction in FRACTIONS:
        names += [f"finetune-{fraction}", f"imagenet-{fraction}"]
    return names + [f"aux-g{gamma:g}-{AUX_FRACTION}" for gamma in GAMMAS]


def run_recipe(name: str, steps: int, out: Path, spec: Path, bccd: Path, smoke: bool) -> Recipe:
    """The recipe of run ``name`` with a schedule of about ``steps`` optimizer steps."""
    base = Recipe.from_yaml(RECIPE)
    recipe = dataclasses.replace(
        base,
        data=str(spec),
        format=None,
        train_split=f"train{AUX_FRACTION}",
        val_split="val",
        init="imagenet",
        warmup_steps=min(150, steps // 10),
        ema_decay=round(max(0.9, min(0.998, 1 - 10 / steps)), 4),
        points=dataclasses.replace(base.points, crop_size=CROP),
    )
    kind, _, rest = name.partition("-")
    freeze = 0
    if kind == "base":
        recipe = dataclasses.replace(recipe, data=str(bccd), format="voc", train_split="trainval", val_split=None)
    elif kind in ("finetune", "imagenet"):
        recipe.train_split = f"train{rest}"
        if kind == "finetune":
            recipe.init, freeze = str(out / "runs" / "base" / "model.pt"), FREEZE_BLOCKS
    else:
        gamma = float(rest.split("-")[0][1:])
        recipe.points = dataclasses.replace(
            recipe.points,
            aux_data=str(BCCD),
            aux_format="voc",
            aux_split="trainval",
            aux_classes=["RBC"],
            aux_scale=AUX_SCALE,
            aux_weight=gamma,
        )
    images = len(load_data(recipe.data, recipe.format, recipe.train_split))
    per_epoch = images // recipe.batch_size if images > recipe.batch_size else 1
    epochs = max(1, round(steps / per_epoch))
    recipe = dataclasses.replace(recipe, stages=[Stage(freeze_blocks=freeze, epochs=epochs)], val_every=epochs)
    return common.smoke_recipe(recipe) if smoke else recipe


def calibrate(recipe: Recipe) -> dict[str, float]:
    """Seconds per training step of ``recipe`` and per 640x480 forward pass of its model (2 threads)."""
    from cytolens.models.registry import build_architecture

    step = common.seconds_per_step(recipe)
    network = build_architecture(recipe.architecture, 1, weights=None).eval()
    image = torch.rand(1, 3, 480, 640)
    with torch.inference_mode():
        network(image)
        start = time.perf_counter()
        for _ in range(3):
            network(image)
    return {"step": round(step, 3), "inference": round((time.perf_counter() - start) / 3, 3)}


def make_plan(out: Path, spec: Path, bccd: Path, minutes: float, smoke: bool) -> dict[str, Any]:
    """Steps per run such that the whole benchmark fits ``minutes``, from measured step and inference times."""
    if smoke:
        return {"smoke": True, "steps": 1}
    start = time.perf_counter()
    plain = calibrate(run_recipe("imagenet-100", 100, out, spec, bccd, smoke))
    aux = calibrate(run_recipe(f"aux-g1-{AUX_FRACTION}", 100, out, spec, bccd, smoke))
    evaluated = len(load_data(spec, split="val")) + len(load_data(spec, split="test"))
    runs = run_names()
    # Per run: start-up and checkpoints (~20 s), the final validation and the test evaluation (+30% decoding).
    overhead = 20 * len(runs) + (len(runs) - 1) * evaluated * plain["inference"] * 1.3
    unit = BASE_STEPS * plain["step"] + sum(aux["step"] if n.startswith("aux") else plain["step"] for n in runs[1:])
    available = minutes * 60 - (time.perf_counter() - start) - 60 - overhead
    steps = int(available / unit)
    common.log.info(
        "%.2f s per step (%.2f with auxiliary data), %.2f s per test image: %d steps per run",
        plain["step"],
        aux["step"],
        plain["inference"],
        steps,
    )
    if steps < 50:
        raise SystemExit(
            f"--budget-minutes {minutes} leaves only {steps} steps per run at {plain['step']:.2f} s per step: "
            "give more time, or run on an otherwise idle machine"
        )
    return {
        "budget_minutes": minutes,
        "seconds": {"plain": plain, "auxiliary": aux},
        "overhead_seconds": round(overhead),
        "steps": steps,
        "base_steps": BASE_STEPS * steps,
    }


def summary(runs: dict[str, dict[str, Any]], plan: dict[str, Any]) -> dict[str, Any]:
    """The F1 table and the published finding's check, from the runs finished so far."""
    f1 = {name: run["evaluation"]["f1"] for name, run in runs.items() if "evaluation" in run}
    table = {
        "finetune_from_bccd": {f"{p}%": f1.get(f"finetune-{p}") for p in FRACTIONS},
        "imagenet_init": {f"{p}%": f1.get(f"imagenet-{p}") for p in FRACTIONS},
        f"auxiliary_bccd_{AUX_FRACTION}%": {f"gamma={g:g}": f1.get(f"aux-g{g:g}-{AUX_FRACTION}") for g in GAMMAS},
    }
    finetune, scratch = f1.get("finetune-20"), f1.get("imagenet-100")
    holds = None if finetune is None or scratch is None else bool(finetune >= scratch - FINDING_TOLERANCE)
    finding = {
        "published": "fine-tuning with 20% of the target data matched training from scratch with 80%",
        "tested": "fine-tune from the BCCD base on 20% vs ImageNet init on 100% (our nearest point to 80%)",
        "finetune_20_f1": finetune,
        "imagenet_100_f1": scratch,
        "tolerance": FINDING_TOLERANCE,
        "holds": holds,
    }
    minutes = sum(run.get("seconds", 0) for run in runs.values()) / 60
    return {"detection_f1": table, "finding": finding, "minutes_sum_of_parts": round(minutes, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the data copies, runs and run state")
    parser.add_argument("--budget-minutes", type=float, default=110.0, help="time for the whole benchmark")
    parser.add_argument("--smoke", action="store_true", help="one epoch per run on a few images (checks the script)")
    args = parser.parse_args()
    common.setup()
    out = args.out.resolve()
    spec, bccd = chula_spec(out, args.smoke), scaled_bccd(out, args.smoke)
    plan = common.once(out / "plan.json", lambda: make_plan(out, spec, bccd, args.budget_minutes, args.smoke))
    truth = load_data(spec, split="test")
    runs: dict[str, dict[str, Any]] = {}
    for name in run_names():
        steps = plan["base_steps"] if name == "base" and not args.smoke else plan["steps"]
        recipe = run_recipe(name, steps, out, spec, bccd, args.smoke)
        folder = out / "runs" / name
        model = common.train_resumable(recipe, folder)
        trained = common.read_json(folder / "trained.json")
        run = {
            "train_split": recipe.train_split,
            "init": recipe.init,
            "freeze_blocks": recipe.stages[0].freeze_blocks,
            "aux_weight": recipe.points.aux_weight if recipe.points.aux_data else None,
            "epochs": recipe.epochs,
            "seconds": trained["seconds_last_session"],
        }
        if name != "base":
            evaluation = common.once(
                folder / "evaluation.json",
                lambda m=model: common.evaluate_points(m, truth, RADIUS, ignore_unlabelled=True),
            )
            ignored = evaluation["unlabelled_cells_ignored"]
            run["evaluation"] = {
                **{k: ignored[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn", "ignored_detections")},
                "thresholds": evaluation["thresholds"],
            }
            run["seconds"] += evaluation["seconds"]
            common.log.info("%s: F1 %.3f", name, ignored["f1"])
        runs[name] = run
        figures = summary(runs, plan)
        targets = {
            "minutes_sum_of_parts": common.target(
                figures["minutes_sum_of_parts"], args.budget_minutes, higher_is_better=False
            )
        }
        common.write_result(
            NAME,
            figures,
            targets,
            folder=out if args.smoke else common.RESULTS,
            complete=len(runs) == len(run_names()),
            plan=plan,
            runs=runs,
            radius=RADIUS,
            aux_scale=AUX_SCALE,
            freeze_blocks=FREEZE_BLOCKS,
        )
    common.log.info("detection F1: %s; finding: %s", figures["detection_f1"], figures["finding"])


if __name__ == "__main__":
    main()
