r"""Turn a training run's ``model.pt`` into a bundled model: half-precision weights, tuned thresholds and held-out
figures in its model card.

The checkpoint is written with the float16 weights that ship and loaded once; thresholds are tuned in memory
(:meth:`~cytolens.inference.model.CellModel.with_thresholds`: no file per value tried) and the figures are
measured with those weights and the chosen thresholds, then both are written into the card. So
``cytolens evaluate --model NAME`` on the same split reproduces the stored figures.

Usage::

    python tools/bundle_model.py runs/blood-cells/model.pt blood-cells \\
        --data ../shared/datasets/bccd --format voc --split test --ratio RBC:WBC --ratio Platelets:RBC \\
        --mpp 0.075 --mpp-source "estimated: median RBC box ~100 px for a 7.5 µm red cell" \\
        --tune-split val --tune-nms 0.4 0.5 0.6

A model trained before cytolens recorded the colours of its training images (``card.input.colour``, see
:mod:`cytolens.models.colour`) gets them from its training data, everything else kept (weights as stored)::

    python tools/bundle_model.py src/cytolens/models/bundled/rbc-morphology.pt rbc-morphology \\
        --data configs/chula-split.yaml --colour-split train --colour-only
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from cytolens.data.annotations import Dataset
from cytolens.inference.evaluate import evaluate_model, predict_dataset
from cytolens.inference.model import CellModel, load_model
from cytolens.inference.peaks import tune_threshold_rel
from cytolens.io.spec import load_data
from cytolens.metrics import evaluate_datasets
from cytolens.metrics.unlabelled import drop_unlabelled_detections
from cytolens.models.card import ColourStats, Report
from cytolens.models.checkpoint import load_network, save_checkpoint, update_metadata
from cytolens.models.colour import dataset_colour
from cytolens.models.registry import BUNDLED_DIR

NOTICE = "For research use only, not for diagnosis."


def colour_from_data(data: str, fmt: str | None, split: str | None) -> ColourStats:
    """The colour statistics (``card.input.colour``) of a model's training images, from its training data."""
    dataset = load_data(data, fmt, split)
    stats = dataset_colour(dataset)
    if stats is None:
        raise SystemExit(f"{data}: split {split!r} holds no images")
    print(f"colour of {stats.images} of the {len(dataset)} images of {data} ({split}): {stats}")
    return stats


def tune_count_thresholds(model: CellModel, truth: Dataset) -> tuple[dict[str, float], float]:
    """Per class, the score threshold (0.05 steps) whose counts come closest to ``truth``; and the summed error."""
    predictions = predict_dataset(model, truth)
    grid = [round(float(t), 2) for t in np.arange(0.15, 0.8, 0.05)]
    errors = {t: evaluate_datasets(predictions, truth, count_threshold=t)["per_class"] for t in grid}
    chosen = {name: min(grid, key=lambda t: errors[t][name]["count_mae"]) for name in truth.classes}
    for name in truth.classes:
        print(name, "count MAE by threshold:", {t: round(errors[t][name]["count_mae"], 3) for t in grid})
    return chosen, sum(errors[chosen[name]][name]["count_mae"] for name in truth.classes)


def choose_threshold_rel(model: CellModel, truth: Dataset, radius: float) -> tuple[float, float]:
    """Point models: the ``ξ`` (``threshold_rel``) with the best detection F1 on ``truth`` (see ``tune_threshold_rel``).

    Peaks are found once with ``ξ = 0`` and filtered per image against its highest peak (the map's
    maximum), which equals decoding again at each ``ξ``. Detections on unlabelled cells count neither
    way when the recipe trained with ``ignore_unlabelled_cells``.
    """
    found = predict_dataset(model.with_thresholds(threshold_rel=0.0), truth)
    recipe = model.card.provenance.recipe  # the flat layout of older runs, or the sectioned one
    if (recipe.get("points") or recipe).get("ignore_unlabelled_cells"):
        found, _ = drop_unlabelled_detections(found, truth, radius)
    # an image's highest peak is its map's maximum
    candidates = [(image, float(image.cells.scores.max(initial=0.0))) for image in found.images]
    xi, figures = tune_threshold_rel(candidates, truth, radius)
    print(f"threshold_rel {xi}: detection F1 {figures['f1']:.4f}")
    return xi, figures["f1"] or 0.0


def tune_operating_point(model: CellModel, truth: Dataset, nms_values: list[float]) -> dict:
    """Choose the NMS IoU (box models) and per-class score thresholds that count best on ``truth``."""
    best: tuple[float, float, dict[str, float]] | None = None
    for nms in nms_values or [model.thresholds.nms]:
        scores, error = tune_count_thresholds(model.with_thresholds(nms=nms), truth)
        print(f"NMS {nms}: summed count MAE {error:.3f} with thresholds {scores}")
        if best is None or error < best[0]:
            best = (error, nms, scores)
    _, nms, scores = best
    return {"nms": nms, "score": scores}


def main() -> None:
    """Bundle the run's model as the command line says."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("run_model", type=Path, help="the run's model.pt")
    parser.add_argument("name", help="bundled model name (file stem)")
    parser.add_argument("--data", required=True, help="held-out data (spec or folder)")
    parser.add_argument("--format", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--radius", type=float, default=None, help="point matching radius")
    parser.add_argument("--ratio", action="append", default=[], help="count ratio A:B for counts.csv")
    parser.add_argument("--mpp", type=float, default=None, help="µm/px of the training images")
    parser.add_argument("--mpp-source", default=None, help="how --mpp was obtained")
    parser.add_argument("--tune-split", default=None, help="split on which to choose the counting thresholds")
    parser.add_argument("--tune-nms", type=float, nargs="*", default=[], help="NMS IoU values to choose from")
    parser.add_argument("--tune-xi", action="store_true", help="point models: choose threshold_rel on --tune-split")
    parser.add_argument("--colour-split", default=None, help="record the colours of this split of --data (training)")
    parser.add_argument("--colour-only", action="store_true", help="only record the colours (--colour-split)")
    parser.add_argument("--out", type=Path, default=None, help="output file (default: the bundled models' NAME.pt)")
    args = parser.parse_args()
    if args.colour_only and not args.colour_split:
        parser.error("--colour-only needs --colour-split")

    torch.set_num_threads(2)
    out = args.out or BUNDLED_DIR / f"{args.name}.pt"
    network, card = load_network(args.run_model)
    if args.colour_split:
        colour = colour_from_data(args.data, args.format, args.colour_split)
        card = replace(card, input=replace(card.input, colour=colour))
    if args.colour_only:
        save_checkpoint(out, network, card, half=card.stored_half)  # float16 weights read as float32: the same
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
        return
    card = replace(card, notice=NOTICE)
    if args.ratio:
        card = replace(card, report=Report(tuple(tuple(ratio.split(":")) for ratio in args.ratio)))
    if args.mpp is not None:
        card = replace(card, input=replace(card.input, mpp=args.mpp, mpp_source=args.mpp_source))
    save_checkpoint(out, network, card, half=True)  # the float16 weights that ship, evaluated below
    model = load_model(out, device="cpu")
    radius = card.evaluation.radius if args.radius is None else args.radius
    if args.tune_split:
        tuning = load_data(args.data, args.format, args.tune_split)
        if args.tune_xi:
            xi, f1 = choose_threshold_rel(model, tuning, radius)
            tuned = {"threshold_rel": xi, "tuned_on": f"{args.tune_split} split: best detection F1 {f1:.4f}"}
        else:
            tuned = tune_operating_point(model, tuning, args.tune_nms)
            tuned["tuned_on"] = f"{args.tune_split} split: lowest count error per class"
        model = model.with_thresholds(**tuned)
    truth = load_data(args.data, args.format, args.split)
    figures, _ = evaluate_model(model, truth, radius)
    figures.pop("details", None)
    figures["model"] = args.name
    metrics = {args.split: {"data": truth.name, **figures}}
    update_metadata(out, {"thresholds": model.thresholds.to_dict(), "metrics": metrics})  # weights kept as stored
    print(json.dumps(metrics[args.split], indent=2, default=str))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
