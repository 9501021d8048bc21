"""CRCHistoPhenotypes nucleus detection and classification with a point FCN (GitHub issue 4).

    python benchmarks/crchisto_points.py --out DIR [--steps 2250] [--analyse] [--pipeline] [--smoke]

Trains ``fcn-lite0`` on ``train/`` minus a seeded 10-image part kept out for choosing ξ (the dataset
spec with the lists ``train``/``tune``/``validation`` is written to ``DIR/crchisto.yaml``), with its
checkpoint in ``DIR/train/`` (never in the repository: the data are for research use only), then
reports on ``validation/`` at r = 6 px: detection precision, recall, F1 and mean distance, and the
classification of matched nuclei (accuracy, weighted F1 over the 4 classes). The schedule is a step
count (``--steps``, default :data:`STEPS`); the step time measured at start-up, the load averages and the
wall time of the run are recorded
(``DIR/plan.json``, ``DIR/train/trained.json``). The same trained model is then decoded in variants
(``DIR/variants.json``): each of no stain normalisation, Reinhard's and Macenko's (towards squares of
training images), with and without test-time flips, thresholded by ``ξ`` times each image's maximum or
by an absolute value, both tuned on the kept-out part and judged on ``validation/``. ``--analyse`` also looks
at the false positives on the kept-out part (``--analyse-split validation`` for the report split):
for each, its proximity value, the distance to the nearest true nucleus, whether that nucleus is
already matched, and the proximity valley towards the nearest other detection; with a CSV, a
picture gallery of false positives and an F1 grid over ξ and ``min_distance``
(``DIR/analysis/<split>/``). ``--pipeline`` also trains a patch classifier (:func:`classifier_recipe`) and reports
the class figures of the detect -> classify pipeline in which it names each nucleus the point model finds.

Run again with the same arguments after an interruption: finished parts are skipped and training
resumes from its last checkpoint. Results: ``benchmarks/results/crchisto_points.json``.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import common
from cytolens.data.annotations import AnnotatedImage, Dataset
from cytolens.data.cells import Cells
from cytolens.data.splits import ratio_split
from cytolens.data.stain import STAIN_METHODS, normalise_stain
from cytolens.inference.model import CellModel, load_model
from cytolens.inference.peaks import (
    THRESHOLD_GRID,
    above,
    find_peaks,
    peak_candidates,
    to_xy,
    tune_threshold_abs,
    tune_threshold_rel,
)
from cytolens.io.atomic import write_bytes, write_text
from cytolens.io.images import read_image
from cytolens.io.spec import DatasetSpec, SplitSpec, load_data, write_spec
from cytolens.metrics.numbers import f1_from_counts
from cytolens.metrics.points import match_points, point_metrics
from cytolens.training.recipe import PatchSettings, PointSettings, Recipe
from cytolens.training.stages import Stage

NAME = "crchisto_points"
DATA = common.REPO.parent / "shared" / "datasets" / "crchisto"
RADIUS = 6.0
"""Matching radius of the SC-CNN evaluation (pixels)."""
TUNE_IMAGES = 10
SEED = 0
ENCODER_BLOCKS = 8
"""``fcn-lite0``'s encoder blocks (stem + 7 stages): frozen while the decoder warms up."""
STEPS = 2250
"""Training steps of the benchmark: 150 epochs of 15 steps (1.33 s per step measured on a lightly loaded 2-core
machine with the class decoder: about 50 minutes)."""
VALIDATIONS = 5
"""How many times training validates on the kept-out part (ξ is tuned at each)."""
REFERENCE_IMAGES = 6
"""Training images whose centre squares (:data:`REFERENCE_SIDE` pixels) make the stain reference."""
REFERENCE_SIDE = 250
CLASSIFIER_BODY_BLOCKS = 12
"""The lite classifier's body blocks (stem, 7 stages, head convolution ...): frozen while its new head warms up."""
CLASSIFIER_EPOCHS = 6
"""Epochs of the classifier with everything training (after one with the body frozen)."""
VARIANT_KEYS = ("precision", "recall", "f1", "class_accuracy", "weighted_f1")
MIN_DISTANCES = (3, 4, 5)
"""``min_distance`` values the decoding variants try on the kept-out part."""
PUBLISHED = {
    "method": "SC-CNN (Sirinukunwattana et al., IEEE TMI 2016)",
    "precision": 0.781,
    "recall": 0.823,
    "f1": 0.802,
    "best_published_f1": {"method": "SFCN-OPI (Zhou et al., 2017)", "f1": 0.834},
}


def base_recipe(spec: Path) -> Recipe:
    """The recipe before its schedule is sized: d = 7 px (CRCHisto's nuclei), a = 3, λ = 5, 256-pixel crops, ξ tuned
    at r = 6; one context level; the class head with a decoder of its own over the encoder's strides 32-4 (64
    channels; ``class_decoder``) and a small loss weight: AdamW still trains the class branch at full speed, while the
    class gradient in the shared encoder stays near the detection gradient (about 0.3-1x of it at the start at
    5e-4, against 200-600x in a shared decoder at weight 0.2); the training crops' stains jittered in HED space
    (strength 0.3)."""
    return Recipe(
        task="points",
        architecture="fcn-lite0",
        kwargs={"context_levels": 1, "class_channels": 32, "class_decoder": 64},
        data=str(spec),
        train_split="train",
        val_split="tune",
        init="imagenet",
        batch_size=4,
        lr=0.003,
        pretrained_lr_factor=0.33,
        weight_decay=0.05,
        warmup_steps=150,
        ema_decay=0.998,
        seed=SEED,
        stages=[Stage(freeze_blocks=ENCODER_BLOCKS, epochs=1), Stage(freeze_blocks=0, epochs=1)],
        points=PointSettings(
            proximity_d=7.0,
            proximity_a=3.0,
            loss_lambda=5.0,
            crop_size=256,
            class_weight=5e-4,
            match_radius=RADIUS,
            min_distance=4,
            stain_jitter=0.3,
        ),
    )


def classifier_recipe(spec: Path) -> Recipe:
    """The patch classifier of the detect -> classify pipeline: a fine-tuned ImageNet EfficientNet-Lite0 on 32-pixel
    windows around each classified nucleus of ``train`` (resampled to 64), rotated and mirrored at random, its
    head first; the epoch with the best macro-F1 on the kept-out part; 8 test-time views."""
    return Recipe(
        task="patches",
        architecture="lite-classifier",
        kwargs={"backbone": "tf_efficientnet_lite0", "hidden": 256, "dropout": 0.2},
        data=str(spec),
        train_split="train",
        val_split="tune",
        init="imagenet",
        batch_size=64,
        lr=0.001,
        pretrained_lr_factor=0.3,
        weight_decay=0.05,
        warmup_steps=100,
        grad_clip=10.0,
        ema_decay=0.998,
        val_every=1,
        seed=SEED,
        keep="best",
        stages=[
            Stage(freeze_blocks=CLASSIFIER_BODY_BLOCKS, epochs=1),
            Stage(freeze_blocks=0, epochs=CLASSIFIER_EPOCHS),
        ],
        patches=PatchSettings(side=32, size=64, max_angle=180, flip=True, balanced=False, views=8),
    )


def pipeline_figures(spec: Path, model_path: Path, out: Path, smoke: bool) -> dict[str, Any]:
    """Train :func:`classifier_recipe` into ``out/classifier`` and give the class figures on ``validation/`` of the
    pipeline in which it names each nucleus the point model finds, with its training minutes."""
    recipe = classifier_recipe(spec)
    path = common.train_resumable(
        common.smoke_recipe(recipe) if smoke else recipe, out / "classifier", max_steps=4 if smoke else -1
    )
    figures = common.once(
        out / "evaluation-pipeline-validation.json",
        lambda: common.evaluate_points(model_path, load_data(spec, split="validation"), RADIUS, classifier=path),
    )
    training = common.read_json(out / "classifier" / "trained.json")
    return {
        "classifier": str(path),
        "recipe": recipe.to_dict(),
        **{key: figures[key] for key in ("class_accuracy", "macro_f1", "weighted_f1", "per_class")},
        "training_minutes": round(training["seconds_last_session"] / 60, 1),
    }


def write_data_spec(out: Path, root: Path, smoke: bool) -> Path:
    """``out/crchisto.yaml``: ``train`` (60 images), ``tune`` (10 seeded images of ``train/``), ``validation``."""
    path = out / "crchisto.yaml"
    if path.is_file():
        return path
    data = load_data(root, "crchisto")
    parts = ratio_split(
        data.splits["train"], {"train": len(data.splits["train"]) - TUNE_IMAGES, "tune": TUNE_IMAGES}, SEED
    )
    lists = {name: sorted(ids, key=data.splits["train"].index) for name, ids in parts.items()}
    lists["validation"] = list(data.splits["validation"])
    if smoke:
        lists = {"train": lists["train"][:4], "tune": lists["tune"][:2], "validation": lists["validation"][:2]}
    write_spec(path, DatasetSpec("crchisto", root, name="crchisto", splits=SplitSpec(lists=lists)))
    return path


def make_plan(spec: Path, steps: int, smoke: bool) -> dict[str, Any]:
    """The recipe with a schedule of about ``steps`` training steps, and the step time measured now."""
    recipe = common.smoke_recipe(base_recipe(spec)) if smoke else base_recipe(spec)
    images = len(load_data(spec, split="train"))
    steps_per_epoch = images // recipe.batch_size if images > recipe.batch_size else 1
    if smoke:
        return {"smoke": True, "steps_per_epoch": steps_per_epoch, "recipe": recipe.to_dict()}
    step = common.seconds_per_step(recipe)
    epochs = max(VALIDATIONS, steps // steps_per_epoch)
    recipe.val_every = epochs // VALIDATIONS
    epochs = epochs // recipe.val_every * recipe.val_every  # the last epoch validates
    # An epoch is one crop per image (15 steps): the encoder stays frozen through the warm-up instead.
    frozen = min(math.ceil(recipe.warmup_steps / steps_per_epoch), epochs // 4)
    recipe.stages = [Stage(freeze_blocks=ENCODER_BLOCKS, epochs=frozen), Stage(freeze_blocks=0, epochs=epochs - frozen)]
    common.log.info(
        "%.2f s per step now, %d steps per epoch: %d epochs (%d with the encoder frozen), validating every %d",
        step,
        steps_per_epoch,
        epochs,
        frozen,
        recipe.val_every,
    )
    return {
        "seconds_per_step_at_start": round(step, 3),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "steps_per_epoch": steps_per_epoch,
        "steps": epochs * steps_per_epoch,
        "recipe": recipe.to_dict(),
    }


@torch.inference_mode()
def proximity_of(model: CellModel, pixels: np.ndarray) -> np.ndarray:
    """The model's proximity map of a whole image (CRCHisto images are 500 px: one pass, no tiling)."""
    return model.predictor.raw([pixels])[0]["proximity"]


def at(proximity: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Map values at cytolens ``x, y`` positions (the pixels holding them)."""
    cols = np.clip(np.floor(xy[..., 0]).astype(int), 0, proximity.shape[1] - 1)
    rows = np.clip(np.floor(xy[..., 1]).astype(int), 0, proximity.shape[0] - 1)
    return proximity[rows, cols]


def valley(proximity: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Lowest proximity on the segment ``a``-``b`` over the lower of its two ends (1: no dip, one blob)."""
    steps = max(2, int(np.ceil(np.linalg.norm(b - a))) + 1)
    line = a + np.linspace(0, 1, steps)[:, None] * (b - a)
    ends = min(at(proximity, a[None])[0], at(proximity, b[None])[0])
    return float(at(proximity, line).min() / ends) if ends > 0 else 0.0


def classify_false_positive(distance: float, matched: bool, radius: float) -> str:
    """``duplicate`` (nearest true nucleus within 2r and already matched: a split nucleus or an unannotated
    neighbour), ``displaced`` (within 2r, unmatched: a localisation miss) or ``isolated`` (no true nucleus
    within 2r: an unannotated nucleus or a false alarm)."""
    if distance > 2 * radius:
        return "isolated"
    return "duplicate" if matched else "displaced"


def false_positives(
    truth: Dataset, maps: dict[str, np.ndarray], thresholds: dict[str, float], radius: float
) -> tuple[list[dict[str, Any]], list[float], dict[str, np.ndarray]]:
    """One row per false positive at the model's thresholds, the proximity values of the true positives,
    and every detection by image id."""
    from scipy.spatial import cKDTree

    rows, tp_scores, detections = [], [], {}
    for image in truth.images:
        proximity = maps[image.image_id]
        found = detections[image.image_id] = find_peaks(
            proximity, thresholds["threshold_rel"], int(thresholds["min_distance"]), thresholds["threshold_abs"]
        )
        scores = at(proximity, found)
        pairs, _ = match_points(found, image.cells.centres, radius)
        tp_scores += scores[pairs[:, 0]].tolist()
        matched_true = set(pairs[:, 1].tolist())
        true_tree = cKDTree(image.cells.centres) if len(image.cells.centres) else None
        found_tree = cKDTree(found)
        for index in np.setdiff1d(np.arange(len(found)), pairs[:, 0]):
            distance, nearest = true_tree.query(found[index]) if true_tree is not None else (np.inf, -1)
            neighbour_distance, neighbour = (
                found_tree.query(found[index], k=2) if len(found) > 1 else ([0, np.inf], [0, -1])
            )
            rows.append(
                {
                    "image_id": image.image_id,
                    "x": float(found[index][0]),
                    "y": float(found[index][1]),
                    "proximity": round(float(scores[index]), 4),
                    "nearest_true_distance": round(float(distance), 2),
                    "nearest_true_matched": bool(nearest in matched_true),
                    "nearest_detection_distance": round(float(neighbour_distance[1]), 2),
                    "valley_to_nearest_detection": round(valley(proximity, found[index], found[neighbour[1]]), 3)
                    if np.isfinite(neighbour_distance[1])
                    else None,
                    "category": classify_false_positive(float(distance), nearest in matched_true, radius),
                }
            )
    return rows, tp_scores, detections


def decoding_grid(truth: Dataset, maps: dict[str, np.ndarray], floor: float, radius: float) -> list[dict[str, Any]]:
    """Detection precision, recall and F1 for every ξ of the tuning grid and ``min_distance`` 2-6."""
    grid = []
    for min_distance in range(2, 7):
        for xi in THRESHOLD_GRID:
            tp = fp = fn = 0
            for image in truth.images:
                found = find_peaks(maps[image.image_id], xi, min_distance, floor)
                pairs, _ = match_points(found, image.cells.centres, radius)
                tp, fp, fn = tp + len(pairs), fp + len(found) - len(pairs), fn + len(image.cells.centres) - len(pairs)
            grid.append(
                {
                    "threshold_rel": xi,
                    "min_distance": min_distance,
                    "precision": round(tp / max(tp + fp, 1), 4),
                    "recall": round(tp / max(tp + fn, 1), 4),
                    "f1": round(f1_from_counts(tp, fp, fn) or 0.0, 4),
                }
            )
    return grid


def gallery(
    truth: Dataset,
    rows: list[dict[str, Any]],
    detections: dict[str, np.ndarray],
    path: Path,
    per_category: int = 10,
    half: int = 20,
) -> None:
    """A PNG of the highest-scoring false positives of each category: the false positive in a red circle,
    other detections as cyan x, true nuclei as green +, the false positive's proximity in yellow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    categories = ("duplicate", "displaced", "isolated")
    by_id = {image.image_id: image for image in truth.images}
    figure, axes = plt.subplots(
        len(categories), per_category, figsize=(1.6 * per_category, 1.8 * len(categories)), squeeze=False
    )
    for axis in axes.ravel():
        axis.axis("off")
    for row, category in enumerate(categories):
        chosen = sorted((r for r in rows if r["category"] == category), key=lambda r: -r["proximity"])[:per_category]
        axes[row, 0].set_title(category, loc="left", fontsize=8)
        for column, fp in enumerate(chosen):
            image = by_id[fp["image_id"]]
            pixels = read_image(image.path)
            x0, y0 = int(fp["x"]) - half, int(fp["y"]) - half
            padded = np.pad(pixels, ((half, half), (half, half), (0, 0)))
            axis = axes[row, column]
            axis.imshow(padded[y0 + half : y0 + 3 * half, x0 + half : x0 + 3 * half])
            marks = ((detections[image.image_id], "x", "cyan"), (image.cells.centres, "+", "lime"))
            for points, marker, colour in marks:
                near = np.abs(points - [fp["x"], fp["y"]]).max(axis=1) < half
                axis.plot(points[near, 0] - x0 - 0.5, points[near, 1] - y0 - 0.5, marker, color=colour, ms=6)
            axis.plot(fp["x"] - x0 - 0.5, fp["y"] - y0 - 0.5, "o", mfc="none", color="red", ms=8)
            axis.text(1, 5, f"{fp['proximity']:.2f}", color="yellow", fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    write_bytes(path, buffer.getvalue())


def analyse(model_path: Path, truth: Dataset, radius: float, folder: Path) -> dict[str, Any]:
    """Where the false positives are; writes ``false_positives.csv``, ``gallery.png`` and returns a summary."""
    import pandas as pd

    model = load_model(model_path, device="cpu")
    thresholds = model.thresholds.to_dict()  # the typed PointThresholds as plain numbers
    maps = {image.image_id: proximity_of(model, read_image(image.path)) for image in truth.images}
    rows, tp_scores, detections = false_positives(truth, maps, thresholds, radius)
    table = pd.DataFrame(
        rows,
        columns=[
            "image_id",
            "x",
            "y",
            "proximity",
            "nearest_true_distance",
            "nearest_true_matched",
            "nearest_detection_distance",
            "valley_to_nearest_detection",
            "category",
        ],
    )
    write_text(folder / "false_positives.csv", table.to_csv(index=False))
    gallery(truth, rows, detections, folder / "gallery.png")
    tp, fp = len(tp_scores), len(rows)
    isolated = int((table["category"] == "isolated").sum())
    grid = decoding_grid(truth, maps, thresholds["threshold_abs"], radius)
    return {
        "split": truth.name,
        "radius": radius,
        "thresholds": thresholds,
        "true_nuclei": int(sum(len(image.cells.centres) for image in truth)),
        "true_positives": tp,
        "false_positives": fp,
        "true_positive_proximity_median": round(float(np.median(tp_scores)), 3) if tp_scores else None,
        "categories": {
            name: {
                "count": int(len(part)),
                "share": round(len(part) / fp, 3) if fp else None,
                "proximity_median": round(float(part["proximity"].median()), 3) if len(part) else None,
                "nearest_true_distance_median": round(float(part["nearest_true_distance"].median()), 2)
                if len(part)
                else None,
                "valley_median": round(float(part["valley_to_nearest_detection"].median()), 3) if len(part) else None,
            }
            for name, part in table.groupby("category")
        },
        "precision_if_isolated_were_nuclei": round((tp + isolated) / (tp + fp), 4) if tp + fp else None,
        "best_decoding": max(grid, key=lambda entry: entry["f1"]),
        "decoding_grid": grid,
        "files": [str(folder / "false_positives.csv"), str(folder / "gallery.png")],
    }


def stain_reference(train: Dataset) -> np.ndarray:
    """The centre squares of the first :data:`REFERENCE_IMAGES` training images, stacked: the stain the model learnt."""
    squares = []
    for image in train.images[:REFERENCE_IMAGES]:
        pixels = read_image(image.path)
        top, left = ((side - REFERENCE_SIDE) // 2 for side in pixels.shape[:2])
        squares.append(pixels[top : top + REFERENCE_SIDE, left : left + REFERENCE_SIDE])
    return np.concatenate(squares)


Maps = list[tuple[AnnotatedImage, dict[str, np.ndarray]]]
"""Per image of a split, the model's ``proximity`` and class ``logits`` maps."""


def split_maps(model: CellModel, truth: Dataset, stain: str | None, reference: np.ndarray) -> Maps:
    """The model's maps of each image, its stain normalised first when ``stain`` names a method."""
    maps = []
    for image in truth.images:
        pixels = read_image(image.path)
        if stain:
            pixels = normalise_stain(pixels, stain, reference)
        maps.append((image, model.predictor.raw([pixels])[0]))
    return maps


def candidates(maps: Maps, min_distance: int) -> list[tuple[AnnotatedImage, float]]:
    """Per image, every peak (``ξ`` 0, no floor) scored by its proximity and classed by the class map there, and the
    map's maximum."""
    found = []
    for image, outputs in maps:
        proximity = outputs["proximity"]
        peaks = peak_candidates(proximity, min_distance)
        cells = Cells(
            centres=to_xy(peaks),
            labels=outputs["logits"][:, peaks[:, 0], peaks[:, 1]].argmax(axis=0),
            scores=proximity[peaks[:, 0], peaks[:, 1]],
        )
        annotated = AnnotatedImage(image.path, image.width, image.height, image.image_id, cells=cells)
        found.append((annotated, float(proximity.max())))
    return found


def decoded_figures(
    found: list[tuple[AnnotatedImage, float]], truth: Dataset, threshold_rel: float, threshold_abs: float
) -> dict[str, Any]:
    """:data:`VARIANT_KEYS` of the peaks above ``max(threshold_abs, threshold_rel * image maximum)``."""
    images = [
        AnnotatedImage(image.path, image.width, image.height, image.image_id,
                       cells=image.cells.select(above(image.cells.scores, peak, threshold_rel, threshold_abs)))
        for image, peak in found
    ]
    figures = point_metrics(Dataset(truth.classes, images), truth, RADIUS)
    return {key: round(figures[key], 4) if figures[key] is not None else None for key in VARIANT_KEYS}


def tuned_decodings(tune: Dataset, maps: Maps, floor: float) -> list[dict[str, Any]]:
    """The best relative (``ξ`` over ``floor``) and absolute decodings on the kept-out part, each with the best
    ``min_distance`` of :data:`MIN_DISTANCES`."""
    best: dict[str, dict[str, Any]] = {}
    for min_distance in MIN_DISTANCES:
        found = candidates(maps, min_distance)
        xi, relative = tune_threshold_rel(found, tune, RADIUS, floor)
        absolute_floor, absolute = tune_threshold_abs(found, tune, RADIUS)
        rules = (("relative", xi, floor, relative), ("absolute", 0.0, absolute_floor, absolute))
        for name, rel, abs_, figures in rules:
            if name not in best or (figures["f1"] or 0.0) > best[name]["tune_f1"]:
                best[name] = {"decoding": name, "threshold_rel": rel, "threshold_abs": abs_,
                              "min_distance": min_distance, "tune_f1": figures["f1"] or 0.0}
    return list(best.values())


def variants(model_path: Path, spec: Path) -> list[dict[str, Any]]:
    """Validation figures of the trained model for each stain normalisation, with and without test-time flips,
    decoded by ``ξ`` (over the card's absolute floor) and by an absolute threshold, each tuned with ``min_distance``
    on the kept-out part.
    """
    plain = load_model(model_path, device="cpu")
    floor = plain.card.thresholds.threshold_abs
    tune, validation = load_data(spec, split="tune"), load_data(spec, split="validation")
    reference = stain_reference(load_data(spec, split="train"))
    rows = []
    for stain in (None, *STAIN_METHODS):
        for flips in (False, True):
            model = plain.with_flips(flips)
            start = time.perf_counter()
            tuned, judged = split_maps(model, tune, stain, reference), split_maps(model, validation, stain, reference)
            seconds = round(time.perf_counter() - start, 1)
            for decoding in tuned_decodings(tune, tuned, floor):
                rules = (decoding["threshold_rel"], decoding["threshold_abs"])
                rows.append({
                    "stain": stain or "none", "flips": flips, **decoding,
                    "tune": decoded_figures(candidates(tuned, decoding["min_distance"]), tune, *rules),
                    "validation": decoded_figures(candidates(judged, decoding["min_distance"]), validation, *rules),
                    "seconds_both_splits": seconds,
                })
            common.log.info("variant %s", rows[-2:])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the spec, checkpoint and run state")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"training steps (default {STEPS})")
    parser.add_argument("--analyse", action="store_true", help="also analyse the false positives")
    parser.add_argument("--analyse-split", default="tune", choices=("tune", "validation"))
    parser.add_argument("--data", type=Path, default=DATA, help="the CRCHistoPhenotypes folder")
    parser.add_argument("--smoke", action="store_true", help="a few steps on a few images (checks the script)")
    parser.add_argument(
        "--pipeline", action="store_true", help="also train a patch classifier, report the detect -> classify pipeline"
    )
    args = parser.parse_args()
    common.setup()
    out = args.out.resolve()
    spec = write_data_spec(out, args.data.resolve(), args.smoke)
    plan = common.once(out / "plan.json", lambda: make_plan(spec, args.steps, args.smoke))
    recipe = Recipe.from_dict(plan["recipe"])
    model_path = common.train_resumable(recipe, out / "train")
    evaluations = {
        split: common.once(
            out / f"evaluation-{split}.json",
            lambda split=split: common.evaluate_points(model_path, load_data(spec, split=split), RADIUS),
        )
        for split in ("validation", "tune")
    }
    analysis = None
    if args.analyse:
        folder = out / "analysis" / args.analyse_split
        analysis = common.once(
            folder / "summary.json",
            lambda: analyse(model_path, load_data(spec, split=args.analyse_split), RADIUS, folder),
        )
        categories = {name: part["count"] for name, part in analysis["categories"].items()}
        common.log.info(
            "false positives on %s: %d of %d detections %s; best decoding %s",
            args.analyse_split,
            analysis["false_positives"],
            analysis["false_positives"] + analysis["true_positives"],
            categories,
            analysis["best_decoding"],
        )
    validation = evaluations["validation"]
    figures = {key: validation[key] for key in common.POINT_KEYS}
    figures.update(
        radius=RADIUS,
        split="validation",
        images=validation["images"],
        thresholds=validation["thresholds"],
        per_class=validation["per_class"],
        per_image=validation["per_image"],
        kept_out_train_part={k: evaluations["tune"][k] for k in ("precision", "recall", "f1")},
    )
    decoded = common.once(out / "variants.json", lambda: variants(model_path, spec))
    pipeline = pipeline_figures(spec, model_path, out, args.smoke) if args.pipeline else None
    training = common.read_json(out / "train" / "trained.json")
    steps = plan.get("steps")
    training_minutes = round(training["seconds_last_session"] / 60, 1)
    figures["variants"] = decoded
    figures["pipeline"] = pipeline
    figures["training"] = {
        "steps": steps,
        "minutes": training_minutes,
        "seconds_per_step": round(training["seconds_last_session"] / steps, 3) if steps else None,
        "resumed": training["resumed"],
        "load_average_at_start": plan.get("load_average"),
        "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
    }
    targets = {
        "detection_f1": common.target(validation["f1"], 0.83),
        "classification_weighted_f1": common.target(validation["weighted_f1"], 0.80),
        "training_minutes": common.target(training_minutes, 45, higher_is_better=False),
    }
    common.write_result(
        NAME,
        figures,
        targets,
        folder=out if args.smoke else common.RESULTS,
        published=PUBLISHED,
        plan=plan,
        training=training,
        model=str(model_path),
        analysis=analysis,
    )
    common.log.info(
        "validation r=%g: P %s R %s F1 %s, class accuracy %s, weighted F1 %s; pipeline: %s",
        RADIUS,
        figures["precision"],
        figures["recall"],
        figures["f1"],
        figures["class_accuracy"],
        figures["weighted_f1"],
        pipeline and {key: pipeline[key] for key in ("class_accuracy", "weighted_f1")},
    )


if __name__ == "__main__":
    main()
