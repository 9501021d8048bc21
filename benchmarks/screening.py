"""Screening, "is any abnormal cell present?", at image and patch level (issue 11).

    python benchmarks/screening.py [--out DIR] [--smoke]

Chula RBC-12 (the checked-in ``configs/chula-split.yaml``): each bundled Chula model, the ``rbc-morphology``
detect -> classify pipeline and the ``rbc-morphology-points`` point model, runs on every train and test image
at its own thresholds (as ``cytolens screen`` runs it). Abnormal: every class but ``normal cell``.

- **Image level**: a screener (``training.screening.fit_screener``: per type the number of cells found and
  their highest probability, and the number of cells) is fitted on the train images and scored on the test
  images, the truth being whether an image's labels hold an abnormal cell. Chula labels only some cells of
  many images, mostly the unusual ones, so that truth is a lower bound (an image whose labelled cells are all
  normal may hold unlabelled abnormal ones), and nearly every image holds a labelled abnormal cell: the
  "any abnormal" figures rest on the few images without one. The same screener is therefore also fitted
  with each abnormal type alone counting as abnormal ("is a schistocyte present?"), where both sides are
  well represented. Beside each: the rule "some cell found is of an abnormal type" and the score "highest
  probability of an abnormal type over the cells".
- **Patch level** (Chula cells): the labelled cells that the model found (a predicted centre within 12 px,
  paired one to one) give patches: the model's 13 probabilities at the cell and the labelled type. The
  screener is fitted on the train cells and scored on the test cells, beside the model's own
  ``1 - p(normal cell)``.

Figures: ROC-AUC, and at the screener's threshold 0.5 accuracy, sensitivity, specificity, H-mean (abnormal
positive). Finished parts are kept in ``DIR``; the results go to ``benchmarks/results/screening.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

import classification_common as cc
import common
from cytolens.data.annotations import Dataset
from cytolens.data.patches import dataset_patches
from cytolens.io.folders import read
from cytolens.metrics.classification import aggregate_folds, classification_metrics
from cytolens.metrics.points import match_points
from cytolens.models.screening import feature_names, image_features
from cytolens.training.fast_heads import head_probabilities
from cytolens.training.screening import fit_screener

NAME = "screening"
SPEC = common.REPO / "configs" / "chula-split.yaml"
MODELS = ("rbc-morphology", "rbc-morphology-points")
"""The bundled Chula models: the detect -> classify pipeline, and the point model whose cells it classifies anew."""
NORMAL = "normal cell"
RADIUS = 12.0
CHUNK = 50
"""Images predicted per saved part (a run resumes from the last part saved)."""
SMOKE_IMAGES = {"train": 12, "test": 6}
HERLEV = cc.DATASETS / "herlev"


def screening_figures(truth: np.ndarray, probability: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """ROC-AUC and, calling abnormal from ``threshold`` on, accuracy, sensitivity, specificity and their H-mean,
    abnormal positive (``None`` where undefined: an AUC with one side empty).
    """
    probability = np.asarray(probability, dtype=np.float64)
    # the argmax of (just under the threshold, p) calls abnormal from the threshold on; the AUC is p's
    scores = np.column_stack([np.full(len(probability), threshold - 1e-9), probability])
    figures = classification_metrics(np.asarray(truth, dtype=np.int64), scores, ["normal", "abnormal"])
    sensitivity, specificity = (figures["per_class"]["abnormal"][key] for key in ("sensitivity", "specificity"))
    defined = sensitivity is not None and specificity is not None and sensitivity + specificity > 0
    return {
        "auc": figures["auc"],
        "accuracy": figures["accuracy"],
        "sensitivity": sensitivity,
        "specificity": specificity,
        "h_mean": 2 * sensitivity * specificity / (sensitivity + specificity) if defined else None,
        "samples": len(probability),
        "abnormal": int(np.sum(truth)),
    }


def predict_images(model: Any, data: Dataset) -> list[dict[str, Any]]:
    """For each image: its screener features, the types its labels hold, the highest probability of an abnormal
    type over its cells, and its labelled cells that the model found (their label and the model's probabilities).
    """
    normal = model.classes.index(NORMAL)
    rows = []
    items = model.predict_iter([image.path for image in data.images])
    for image, found in zip(data.images, items, strict=True):
        if not hasattr(found, "cells"):
            raise SystemExit(str(found))
        cells = found.cells
        labelled = image.cells.select(image.cells.labels >= 0)
        pairs, _ = match_points(cells.centres, labelled.centres, RADIUS)
        probabilities = cells.probabilities if cells.probabilities is not None else np.zeros((len(cells), 13))
        rows.append(
            {
                "image": image.image_id,
                "features": image_features(cells, len(model.classes)).round(6).tolist(),
                "types": sorted({int(label) for label in labelled.labels}),
                "max_abnormal": float((1 - probabilities[:, normal]).max()) if len(cells) else 0.0,
                "cells": [
                    [int(labelled.labels[t]), *np.round(probabilities[p], 6).tolist()] for p, t in pairs.tolist()
                ],
                "labelled": len(labelled),
            }
        )
    return rows


def predictions(out: Path, model: Any, data: Dataset, split: str) -> list[dict[str, Any]]:
    """:func:`predict_images` of a split, in parts of :data:`CHUNK` images kept in ``out``."""
    subset = data.subset(split)
    rows = []
    for start in range(0, len(subset), CHUNK):
        part = Dataset(subset.classes, subset.images[start : start + CHUNK], name=subset.name)
        rows += common.once(out / f"chula-{split}-{start:04d}.json", lambda part=part: predict_images(model, part))
    return rows


def image_level(train: list[dict], test: list[dict], classes: list[str]) -> dict[str, Any]:
    """Image-level screeners, "any abnormal type" and each abnormal type alone, against the plain rules."""
    splits = {"train": train, "test": test}
    features = {split: np.array([row["features"] for row in rows]) for split, rows in splits.items()}
    result: dict[str, Any] = {}
    for name in ["any", *(name for name in classes if name != NORMAL)]:
        abnormal = [c for c in classes if c != NORMAL] if name == "any" else [name]
        wanted = {classes.index(c) for c in abnormal}
        truth = {split: np.array([bool(set(row["types"]) & wanted) for row in rows]) for split, rows in splits.items()}
        found = features["test"][:, sorted(wanted)].sum(axis=1) > 0
        if name == "any":
            highest = np.array([row["max_abnormal"] for row in test])
        else:  # the max_p_<type> feature
            highest = features["test"][:, len(classes) + classes.index(name)]
        screener = None
        if 0 < truth["train"].sum() < len(truth["train"]):  # else nothing to tell apart in the train images
            fitted = fit_screener(features["train"], truth["train"], level="images", classes=classes, abnormal=abnormal)
            screener = screening_figures(truth["test"], fitted.probabilities(features["test"]))
        result[name] = {
            "abnormal_types": abnormal,
            "train_images": len(truth["train"]),
            "train_abnormal": int(truth["train"].sum()),
            "screener": screener,
            "rule_any_cell_of_an_abnormal_type": screening_figures(truth["test"], found.astype(np.float64)),
            "highest_abnormal_probability": screening_figures(truth["test"], highest),
        }
    return result


def patch_level(train: list[dict], test: list[dict], classes: list[str]) -> dict[str, Any]:
    """Patch-level screener on the found labelled cells' probabilities, against ``1 - p(normal cell)``."""
    normal = classes.index(NORMAL)
    cells = {split: np.array([cell for row in rows for cell in row["cells"]]) for split, rows in
             (("train", train), ("test", test))}  # fmt: skip
    truth = {split: table[:, 0].astype(int) != normal for split, table in cells.items()}
    abnormal = [c for c in classes if c != NORMAL]
    start = time.perf_counter()
    screener = fit_screener(cells["train"][:, 1:], truth["train"], level="patches", classes=classes, abnormal=abnormal)
    seconds = time.perf_counter() - start
    return {
        "features": feature_names("patches", classes),
        "train_cells": len(truth["train"]),
        "train_abnormal": int(truth["train"].sum()),
        "screener": screening_figures(truth["test"], screener.probabilities(cells["test"][:, 1:])),
        "one_minus_p_normal": screening_figures(truth["test"], 1 - cells["test"][:, 1 + normal]),
        "fit_seconds": round(seconds, 2),
    }


def herlev_patches(out: Path, cache: Path | None, smoke: bool) -> dict[str, Any]:
    """Herlev patch-level screening from a 7-class classifier's probabilities, 5-fold cross-validation.

    The classifier is that of ``classification_herlev.py`` (its folds, features and heads, from
    ``classification_common``): each fold's 7-class head gives the test crops' probabilities (mean of 8
    views). The fold's screener is fitted on probabilities that the training crops get from heads that did
    not see them (an inner 5-fold cross-validation of the training folds), so that the test fold decides
    nothing; beside it, the summed probability of the abnormal classes.
    """
    data = read(HERLEV)
    abnormal = np.array([not name.startswith("normal_") for name in data.classes])
    patches = dataset_patches(data.images)
    seven = cc.labels_of(patches, len(data.classes))
    if smoke:
        keep = np.concatenate([np.flatnonzero(seven == c)[:20] for c in range(len(data.classes))])
        patches, seven = [patches[i] for i in keep], seven[keep]
    variant = cc.Variant(size=64) if smoke else cc.Variant()
    paths = [image.path for image in data.images]
    views = max(variant.train_views, variant.test_views)
    feats = cc.features(variant, paths, patches, views, cache, out / "herlev" / "features.json")
    train_feats, test_feats = feats[:, : variant.train_views], feats[:, : variant.test_views]
    folds = 2 if smoke else cc.FOLDS
    names = [name for name, flag in zip(data.classes, abnormal, strict=True) if flag]

    def probabilities(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        """The test crops' 7-class probabilities (mean over their views) from a head trained on ``train``."""
        model, _ = cc.fit_head(train_feats[train], seven[train], len(data.classes), variant.backbone)
        return head_probabilities(model, test_feats[test])

    results = []
    for k, (train, test) in enumerate(cc.folds(seven, folds)):

        def run(train: np.ndarray = train, test: np.ndarray = test) -> dict[str, Any]:
            held_out = np.zeros((len(train), len(data.classes)))
            for inner_train, inner_test in cc.folds(seven[train], folds):
                held_out[inner_test] = probabilities(train[inner_train], train[inner_test])
            screener = fit_screener(held_out, abnormal[seven[train]], level="patches", classes=data.classes,
                                    abnormal=names)  # fmt: skip
            tested = probabilities(train, test)
            truth = abnormal[seven[test]]
            return {
                "screener": screening_figures(truth, screener.probabilities(tested)),
                "summed_abnormal_probability": screening_figures(truth, tested[:, abnormal].sum(axis=1)),
                "seven_class_accuracy": float((tested.argmax(axis=1) == seven[test]).mean()),
            }

        results.append(common.once(out / "herlev" / f"fold{k}.json", run))
    return {
        "mean": aggregate_folds(results),
        "folds": results,
        "abnormal_types": names,
        "crops": len(patches),
        "variant": variant.name,
        "patches": "whole crop: centre = crop centre, side = longer side (mirrored fill); Herlev has no masks",
    }


def chula(out: Path, name: str, data: Dataset) -> dict[str, Any]:
    """Image- and patch-level figures of the bundled model ``name`` on Chula (its predictions kept in ``out/name``)."""
    from cytolens.inference.model import load_model

    model = load_model(name, device="cpu")
    start = time.perf_counter()
    train, test = (predictions(out / name, model, data, split) for split in ("train", "test"))
    common.log.info("%s: predictions ready (%.0f s this session)", name, time.perf_counter() - start)
    return {"images": image_level(train, test, model.classes), "patches": patch_level(train, test, model.classes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/cytolens-bench/screening"), help="finished parts")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: the user cache)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=MODELS, help="bundled Chula models to run")
    parser.add_argument("--smoke", action="store_true", help="a few images per split (checks the script)")
    args = parser.parse_args()
    common.setup()
    from cytolens.io.spec import load_data

    out = args.out.resolve() / ("smoke" if args.smoke else "full")
    herlev = herlev_patches(out, args.cache, args.smoke)
    data = load_data(SPEC)
    if args.smoke:
        data.splits = {split: data.splits[split][:count] for split, count in SMOKE_IMAGES.items()}
    figures = {"chula": {name: chula(out, name, data) for name in args.models}, "herlev_patches": herlev}
    common.write_result(
        NAME,
        figures,
        {},
        folder=out if args.smoke else common.RESULTS,
        data=str(SPEC.relative_to(common.REPO)),
        labelling_note=(
            "Chula RBC-12 labels only some cells of many images, mostly the unusual ones: an image's truth "
            "('its labels hold an abnormal type') is a lower bound, and 363 of 366 train and 104 of 105 test "
            "images hold a labelled abnormal cell, so the image-level 'any' figures rest on 3 and 1 normal images."
        ),
    )
    for name, result in figures["chula"].items():
        for kind, entry in result["images"].items():
            scores = ("screener", "highest_abnormal_probability", "rule_any_cell_of_an_abnormal_type")
            common.log.info("%s images %-14s AUC %s", name, kind, [entry[key] and entry[key]["auc"] for key in scores])
        patches = result["patches"]
        common.log.info("%s patches: screener %s; 1 - p(normal) %s", name, patches["screener"],
                        patches["one_minus_p_normal"])  # fmt: skip
    common.log.info("herlev: %s", herlev["mean"])


if __name__ == "__main__":
    main()
