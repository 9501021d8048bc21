"""Chula RBC-12 multi-label patches of touching cells: "mixed"- against "single"-trained heads, fast mode (issue 11).

    python benchmarks/chula_multilabel.py [--touching PX] [--out DIR] [--cache DIR] [--threads N] [--smoke]

The splits of the checked-in ``configs/chula-split.yaml``. In every image, labelled cells whose centres lie
within ``--touching`` pixels of each other (default 36: red cells here are about 44 px across, neighbouring
centres about 42 px apart, and a tenth to a quarter of the labelled cells have a neighbour within 33-37 px) are
grouped into clusters (:func:`cytolens.data.patches.touching_clusters`). A lone cell gives a single-label
patch, a square of 64 px about its centre (as ``configs/chula-cells.yaml``); a cluster gives one patch about
its extent (the union of its cells' 64-px squares, squared), labelled with the set of its types
(:func:`cytolens.data.patches.dataset_patches`). Every patch is resampled to the same 96-px network input.

Two multi-label classifiers (one sigmoid per type) are trained in the fast mode: the frozen ImageNet
EfficientNet-Lite0's pooled features of every patch computed once and cached (``--cache``), the training
patches under 4 views (identity, flip, 90° and 180° rotations), each one sample, the val and test patches
under the 8 dihedral views; the 512-unit head is trained on them
(:func:`cytolens.training.fast_heads.train_head`) with class-balanced loss weights, as the fast mode trains by
default, and without (each a part of the headline):

- **mixed**: on the single- and multi-cell patches of the train split, early-stopped on those of val;
- **single**: on the single-cell patches of the train split only, early-stopped on those of val.

Both are scored on the **mixed test patches** (every single- and multi-cell patch of the test split), their
probabilities averaged over the 8 views (and on the first view alone): per-type ROC-AUC, mean AUC, exact-match
accuracy (every type of a patch right) and Hamming loss (share of wrong type calls), with each type called
from 0.5, and from per-type thresholds tuned for F1 on the val patches the head was early-stopped on
(:func:`cytolens.training.patch_module.tune_thresholds`; the single-trained head also with thresholds tuned on
the mixed val patches). Exact match is also given over the single- and the multi-cell test patches apart.
Published (Chula RBC-12, multi-label patches): exact match 0.722 mixed-trained against 0.649 single-trained,
per-type AUC above 0.9 mixed-trained. Targets, judged for each head setting on 8 views with each type called
from 0.5: mixed exact match >= 0.75 and above single-trained. Finished parts are kept under ``--out`` (the
features in the cache); results: ``benchmarks/results/chula_multilabel.json``.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree

import classification_common as cc
import common
from cytolens.data.annotations import AnnotatedImage
from cytolens.data.cells import UNCLASSIFIED
from cytolens.data.patches import Patch, dataset_patches
from cytolens.io.spec import load_data
from cytolens.metrics.classification import multilabel_metrics
from cytolens.models.classifier import PatchClassifier, lite_classifier
from cytolens.training.fast_heads import HeadSettings, head_probabilities, patch_targets, train_head
from cytolens.training.patch_module import DEFAULT_THRESHOLD, tune_thresholds

NAME = "chula_multilabel"
SPEC = common.REPO / "configs" / "chula-split.yaml"
TOUCHING = 36.0
VARIANT = cc.Variant(side=64.0, size=96, train_views=4, test_views=8)
SPLITS = ("train", "val", "test")
HEADS = {"balanced": cc.HEAD, "unbalanced": dataclasses.replace(cc.HEAD, balance="none")}
"""How the heads are trained: with class-balanced loss weights (the headline), and without."""
KINDS = ("mixed", "single")
HEADLINE = ("exact_match", "hamming", "auc", "exact_match_single_cell", "exact_match_multi_cell")
SMOKE_IMAGES = 4
PUBLISHED = {
    "exact_match_mixed_trained": 0.722,
    "exact_match_single_trained": 0.649,
    "per_type_auc_mixed_trained": "above 0.9",
}


@dataclasses.dataclass(frozen=True)
class Split:
    """The patches of one split and their features.

    Attributes:
        paths: The image files (``patch.image`` indexes them).
        patches: Single- and multi-cell patches, image by image.
        features: ``(P, V, F)`` pooled features under the variant's views.
        targets: ``(P, C)`` 0/1 types of each patch.
        single: ``(P,)`` whether a patch is one cell.

    """

    paths: list[Path]
    patches: list[Patch]
    features: np.ndarray
    targets: np.ndarray
    single: np.ndarray


def neighbour_distances(images: Sequence[AnnotatedImage]) -> dict[str, float]:
    """Percentiles 5, 10, 25 and 50 of each labelled cell's distance to the nearest labelled cell of its image."""
    nearest = []
    for image in images:
        centres = image.cells.centres[image.cells.labels != UNCLASSIFIED]
        if len(centres) > 1:
            nearest.append(cKDTree(centres).query(centres, k=2)[0][:, 1])
    values = np.percentile(np.concatenate(nearest), (5, 10, 25, 50))
    return {f"p{q}": round(float(v), 1) for q, v in zip((5, 10, 25, 50), values, strict=True)}


def cluster_counts(patches: Sequence[Patch]) -> dict[str, Any]:
    """How many patches are single cells, clusters, and clusters of several types; cluster sizes; largest side."""
    multi = [patch for patch in patches if patch.cells > 1]
    sizes = collections.Counter(patch.cells for patch in multi)
    return {
        "patches": len(patches),
        "cells": sum(patch.cells for patch in patches),
        "single_cell": len(patches) - len(multi),
        "multi_cell": len(multi),
        "multi_cell_several_types": sum(len(patch.labels) > 1 for patch in multi),
        "cells_in_clusters": sum(patch.cells for patch in multi),
        "cluster_sizes": {str(size): sizes[size] for size in sorted(sizes)},
        "largest_cluster_side_px": max((patch.side for patch in multi), default=None),
    }


def multilabel_head(num_classes: int, backbone: str) -> PatchClassifier:
    """A seeded multi-label classifier whose head alone is trained (its body, left random, is never run)."""
    torch.manual_seed(cc.SEED)
    return lite_classifier(num_classes, backbone=backbone, weights=None, multi_label=True)


def scores(split: Split, probabilities: np.ndarray, classes: list[str], thresholds: np.ndarray) -> dict[str, Any]:
    """Multi-label figures of a split's patches, each type called from its threshold; exact match apart on the
    single- and multi-cell patches.
    """
    figures = multilabel_metrics(split.targets, probabilities, classes, thresholds)
    called = probabilities >= thresholds
    right = (called == split.targets.astype(bool)).all(axis=1)
    return {
        **{key: figures[key] for key in ("exact_match", "hamming", "accuracy", "auc", "f1", "sensitivity")},
        "exact_match_single_cell": float(right[split.single].mean()) if split.single.any() else None,
        "exact_match_multi_cell": float(right[~split.single].mean()) if (~split.single).any() else None,
        "thresholds": [round(float(t), 2) for t in np.broadcast_to(thresholds, (len(classes),))],
        "per_type": {
            name: {key: row[key] for key in ("auc", "f1", "support")} for name, row in figures["per_class"].items()
        },
    }


def run_head(kind: str, settings: HeadSettings, splits: dict[str, Split], classes: list[str]) -> dict[str, Any]:
    """Train the ``kind`` (``mixed`` or ``single``) head with ``settings`` and score it on the mixed test patches."""
    train, val, test = (splits[name] for name in SPLITS)
    keep_train = np.ones(len(train.patches), bool) if kind == "mixed" else train.single
    keep_val = np.ones(len(val.patches), bool) if kind == "mixed" else val.single
    model = multilabel_head(len(classes), VARIANT.backbone)
    fit = train_head(
        model,
        train.features[keep_train],
        train.targets[keep_train],
        settings,
        val.features[keep_val][:, :1],
        val.targets[keep_val],
    )
    val_probabilities = head_probabilities(model, val.features)
    thresholds = {
        "threshold_0.5": np.full(len(classes), DEFAULT_THRESHOLD),
        "tuned_on_val": tune_thresholds(val.targets[keep_val], val_probabilities[keep_val]),
    }
    if kind == "single":
        thresholds["tuned_on_mixed_val"] = tune_thresholds(val.targets, val_probabilities)
    start = time.perf_counter()
    one_view = head_probabilities(model, test.features[:, :1])
    views = head_probabilities(model, test.features[:, : VARIANT.test_views])
    head_ms = (time.perf_counter() - start) / (len(test.patches) * (1 + VARIANT.test_views)) * 1000
    return {
        f"views_{VARIANT.test_views}": {name: scores(test, views, classes, t) for name, t in thresholds.items()},
        "one_view": {name: scores(test, one_view, classes, t) for name, t in thresholds.items()},
        "train_patches": int(keep_train.sum()),
        "train_samples": int(keep_train.sum()) * VARIANT.train_views,
        "val_patches": int(keep_val.sum()),
        "head_seconds": round(fit.seconds, 2),
        "epochs": len(fit.losses),
        "best_epoch": fit.best_epoch,
        "head_ms_per_patch_view": round(head_ms, 4),
    }


def comparison(runs: dict[str, Any], views: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The mixed- and single-trained heads of one setting side by side on ``views`` test views (each type called
    from 0.5 and from the thresholds tuned on val), and the targets, judged at 0.5.
    """
    scored = {kind: runs[kind][f"views_{views}"] for kind in KINDS}
    mixed, single = (scored[kind]["threshold_0.5"]["exact_match"] for kind in KINDS)
    aucs = [row["auc"] for row in scored["mixed"]["threshold_0.5"]["per_type"].values() if row["auc"] is not None]
    figures = {
        **{
            f"{kind}_trained": {
                thresholds: {key: figures[thresholds][key] for key in HEADLINE}
                for thresholds in ("threshold_0.5", "tuned_on_val")
            }
            for kind, figures in scored.items()
        },
        "mixed_per_type_auc_min": min(aucs),
        "mixed_types_auc_above_0.9": f"{sum(auc > 0.9 for auc in aucs)} of {len(aucs)}",
    }
    targets = {
        "mixed_exact_match": common.target(mixed, 0.75),
        "mixed_above_single": {"value": round(mixed - single, 4), "target": "> 0", "met": bool(mixed > single)},
    }
    return figures, targets


def main() -> None:
    parser = cc.arguments(__doc__.splitlines()[0], "/tmp/cytolens-bench/chula_multilabel")
    parser.add_argument(
        "--touching", type=float, default=TOUCHING, help=f"touching distance between centres, px (default {TOUCHING:g})"
    )
    args = parser.parse_args()
    if args.touching <= 0:
        parser.error("--touching must be above 0")
    common.setup(args.threads)
    start = time.perf_counter()
    variant = dataclasses.replace(VARIANT, size=64) if args.smoke else VARIANT
    out = args.out / ("smoke" if args.smoke else "full") / f"{variant.name}-touching{args.touching:g}"
    splits, counts = {}, {}
    for name in SPLITS:
        data = load_data(SPEC, split=name)
        images = data.images[:SMOKE_IMAGES] if args.smoke else data.images
        patches = dataset_patches(images, side=variant.side, touching=args.touching)
        paths = [image.path for image in images]
        views = variant.train_views if name == "train" else variant.test_views
        features = cc.features(variant, paths, patches, views, args.cache, out / f"{name}-features.json")
        targets = patch_targets(patches, len(data.classes), multi_label=True)
        splits[name] = Split(paths, patches, features, targets, np.array([patch.cells == 1 for patch in patches]))
        counts[name] = {**cluster_counts(patches), "nearest_neighbour_px": neighbour_distances(images)}
    classes = data.classes
    heads = {
        name: {
            kind: common.once(
                out / f"head-{kind}-{name}.json",
                lambda kind=kind, settings=settings: run_head(kind, settings, splits, classes),
            )
            for kind in KINDS
        }
        for name, settings in HEADS.items()
    }
    cost = cc.extraction_cost(variant, splits["test"].paths, splits["test"].patches, out)
    figures = {name: comparison(runs, variant.test_views) for name, runs in heads.items()}
    common.write_result(
        NAME,
        {
            "headline": {"test_views": variant.test_views, **{name: pair[0] for name, pair in figures.items()}},
            "patches": counts,
            "heads": heads,
            "cost": cost,
        },
        {
            **figures["balanced"][1],
            **{f"{key}_unbalanced_head": value for key, value in figures["unbalanced"][1].items()},
        },
        folder=out.parent if args.smoke else common.RESULTS,
        **cc.minutes(out, start),
        settings=cc.settings(
            [variant],
            cross_validation=False,
            touching_px=args.touching,
            patches=(
                f"a lone labelled cell: a square of {variant.side:g} px about its centre; cells within "
                f"{args.touching:g} px of each other (transitively): one patch about their extent, labelled with "
                f"the set of their types; resampled to {variant.size} px (mirrored past the image edge)"
            ),
            early_stopping="the val patches of the head's own kind (first view only)",
            heads="multi-label (one sigmoid per type); with class-balanced loss weights and without",
            head_settings={name: dataclasses.asdict(settings) for name, settings in HEADS.items()},
            splits="train / val / test of configs/chula-split.yaml",
        ),
        classes=classes,
        published=PUBLISHED,
    )


if __name__ == "__main__":
    main()
