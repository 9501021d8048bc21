"""Shared plumbing of the crop-classification benchmarks (issue 11), all in the fast mode.

The fast mode: a frozen ImageNet EfficientNet-Lite body, its pooled features of every patch under every view
computed once and cached (:func:`cytolens.training.feature_cache.patch_features`, the cache folder given by
``--cache``), and the 512-unit head trained on them in seconds (:func:`cytolens.training.fast_heads.train_head`).
Each view of a training patch is one training sample (views: the identity, the flip, then the 90° rotations,
as :func:`cytolens.data.patches.test_time_views` orders them); a test patch is scored on its first view alone
and as the mean of its first ``N`` views (test-time aggregation).

Cross-validation: stratified folds (scikit-learn's ``StratifiedKFold``, seeded); in each fold a stratified
tenth of the training patches is held out for early stopping, so the test fold decides nothing. Finished
folds are JSON files under ``--out`` (:func:`common.once`): running the command again skips them.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold, train_test_split

import common
from cytolens.data.patches import Patch, View, dataset_patches, test_time_views
from cytolens.io.folders import read as read_folders
from cytolens.metrics.classification import aggregate_folds, classification_metrics
from cytolens.models.classifier import PatchClassifier, lite_classifier
from cytolens.training.fast_heads import HeadSettings, head_probabilities, patch_targets, train_head
from cytolens.training.feature_cache import FeatureCache, patch_features

DATASETS = common.REPO.parent / "shared" / "datasets"
HEAD = HeadSettings(epochs=60, lr=1e-3, weight_decay=1e-2, batch_size=256, balance="weights", patience=8)
"""How every benchmark trains its heads."""
FOLDS = 5
SEED = 0
COST_PATCHES = 32


@dataclass(frozen=True)
class Variant:
    """One way of computing features: the body, the network input size, and the views of each patch.

    Attributes:
        backbone: The EfficientNet-Lite body (ImageNet weights).
        side: Side of the window around a cell marked by a point, in pixels (``None``: whole crops).
        size: Network input side; every window is resampled to it.
        train_views: Views of each training patch, each one sample.
        test_views: Views averaged per test patch (the figures are given for 1 view and for this many).

    """

    backbone: str = "tf_efficientnet_lite0"
    side: float | None = None
    size: int = 224
    train_views: int = 8
    test_views: int = 8

    @property
    def name(self) -> str:
        side = f"side{self.side:g}-" if self.side else ""
        return f"{self.backbone.removeprefix('tf_efficientnet_')}-{side}{self.size}-train{self.train_views}"


def arguments(description: str, out: str) -> argparse.ArgumentParser:
    """The options every classification benchmark takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=Path(out), help="finished parts (rerun skips them)")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: the user cache)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the 2 cores are shared)")
    parser.add_argument("--smoke", action="store_true", help="a few patches per class, 2 folds: a check of the script")
    return parser


@functools.cache
def body(backbone: str) -> PatchClassifier:
    """A classifier with the ImageNet body ``backbone`` (its head is not used)."""
    return lite_classifier(2, backbone=backbone).eval()


def fresh_head(backbone: str, num_classes: int, seed: int = SEED) -> PatchClassifier:
    """A classifier sharing the ImageNet body of ``backbone``, with a new seeded head of ``num_classes``."""
    model = body(backbone)
    torch.manual_seed(seed)
    return PatchClassifier(
        model.body,
        model.feature_dim,
        num_classes,
        512,
        0.2,
        False,
        tuple(model.mean.flatten().tolist()),
        tuple(model.std.flatten().tolist()),
    )


def features(
    variant: Variant,
    paths: Sequence[Path],
    patches: Sequence[Patch],
    views: int,
    cache: Path | None,
    record: Path,
) -> np.ndarray:
    """Features of ``patches`` under the first ``views`` test-time views; the time it took first is kept in
    ``record`` (JSON).
    """
    start = time.perf_counter()
    view_list = test_time_views(views)
    result = patch_features(body(variant.backbone), paths, patches, view_list, variant.size, FeatureCache(cache))
    common.once(
        record,
        lambda: {"patch_views": len(patches) * views, "seconds_first_run": round(time.perf_counter() - start, 1)},
    )
    return result


def folds(labels: np.ndarray, count: int = FOLDS, seed: int = SEED) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified ``(train, test)`` index pairs."""
    splitter = StratifiedKFold(n_splits=count, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def fit_head(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    backbone: str,
    stop: tuple[np.ndarray, np.ndarray] | None = None,
    settings: HeadSettings = HEAD,
) -> tuple[PatchClassifier, dict[str, Any]]:
    """A head trained on ``(P, V, F)`` features, early-stopped on ``stop`` (features and labels; by default a
    stratified tenth of the patches, held out, on their first view).

    Returns:
        The model and what the training did.

    """
    if stop is None:
        stop_size = max(round(0.1 * len(labels)), len(np.unique(labels)))
        fit_part, stop_part = train_test_split(
            np.arange(len(labels)), test_size=stop_size, stratify=labels, random_state=SEED
        )
        features, labels, stop = features[fit_part], labels[fit_part], (features[stop_part][:, :1], labels[stop_part])
    model = fresh_head(backbone, num_classes, SEED)
    fit = train_head(model, features, labels, settings, *stop)
    info = {
        "head_seconds": round(fit.seconds, 2),
        "epochs": len(fit.losses),
        "best_epoch": fit.best_epoch,
        "train_samples": int(features.shape[0] * features.shape[1]),
    }
    return model, info


def scored(model: PatchClassifier, features: np.ndarray, truth: np.ndarray, score: Callable) -> dict[str, Any]:
    """Figures of the test patches on their first view alone and on the mean of their ``V`` views, and the
    accuracy for 1, 2, ... ``V`` views averaged.
    """
    per_view = np.stack([head_probabilities(model, features[:, v : v + 1]) for v in range(features.shape[1])])
    aggregated = np.cumsum(per_view, axis=0) / np.arange(1, len(per_view) + 1)[:, None, None]
    return {
        "one_view": score(truth, aggregated[0]),
        f"views_{len(aggregated)}": score(truth, aggregated[-1]),
        "accuracy_by_views": [float((a.argmax(1) == truth).mean()) for a in aggregated],
    }


def summary(figures: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of :func:`cytolens.metrics.classification.classification_metrics` (no tables)."""
    keep = ("accuracy", "f1", "weighted_f1", "auc", "sensitivity", "specificity", "h_mean")
    return {key: figures[key] for key in keep if key in figures}


def cross_validate(
    part: Path,
    backbone: str,
    train_features: np.ndarray,
    tests: dict[str, np.ndarray],
    labels: np.ndarray,
    classes: list[str],
    splits: list[tuple[np.ndarray, np.ndarray]],
    score: Callable | None = None,
) -> dict[str, Any]:
    """Fold by fold (each kept as ``part/foldK.json``): a head trained on the training patches, scored on each
    set of test features; and the mean ± std of every figure over the folds (and the mean accuracy for 1, 2, ...
    views averaged).

    Args:
        part: Folder of the finished folds.
        backbone: The body the features come from.
        train_features: ``(P, V, F)`` features under the training views.
        tests: Named ``(P, V', F)`` features of the same patches to score the test folds on (e.g. centred and
            jittered windows), each at 1 view and at ``V'`` views.
        labels: ``(P,)`` class indices.
        classes: Class names.
        splits: ``(train, test)`` index pairs.
        score: ``(labels, probabilities) -> dict`` of figures (default: :func:`per_class_f1`).

    """

    def default(truth: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
        return per_class_f1(truth, probabilities, classes)

    results = []
    for k, (train, test) in enumerate(splits):

        def run(train: np.ndarray = train, test: np.ndarray = test) -> dict[str, Any]:
            model, info = fit_head(train_features[train], labels[train], len(classes), backbone)
            start = time.perf_counter()
            result = {name: scored(model, feats[test], labels[test], score or default) for name, feats in tests.items()}
            patch_views = sum(len(test) * feats.shape[1] for feats in tests.values())
            info["head_ms_per_patch_view"] = round((time.perf_counter() - start) / patch_views * 1000, 4)
            return {**result, **info, "test_patches": len(test)}

        results.append(common.once(part / f"fold{k}.json", run))
    mean = aggregate_folds(results)
    for name in tests:  # what each added test view buys (lists are no part of aggregate_folds)
        by_views = np.array([result[name]["accuracy_by_views"] for result in results])
        mean[name]["accuracy_by_views"] = [round(float(value), 4) for value in by_views.mean(axis=0)]
    return {"mean": mean, "folds": results}


def extraction_cost(variant: Variant, paths: Sequence[Path], patches: Sequence[Patch], part: Path) -> dict[str, Any]:
    """Milliseconds per patch of the feature extraction without the cache, with 1 view and with
    ``variant.test_views`` views (the first :data:`COST_PATCHES` patches, after a warm-up), kept in ``part``.
    """

    def measure() -> dict[str, Any]:
        model = body(variant.backbone)
        sample = list(patches[:COST_PATCHES])
        patch_features(model, paths, sample[:4], [View()], variant.size)  # warm-up
        result = {}
        for views in (1, variant.test_views):
            start = time.perf_counter()
            patch_features(model, paths, sample, test_time_views(views), variant.size)
            result[f"ms_per_patch_{views}_views"] = round((time.perf_counter() - start) / len(sample) * 1000, 1)
        return {**result, "patches": len(sample), "backbone": variant.backbone, "size": variant.size}

    return common.once(part / "cost.json", measure)


def settings(variants: Sequence[Variant], cross_validation: bool = True, **extra: Any) -> dict[str, Any]:
    """The settings record of a result file (with the folds and early stopping of :func:`cross_validate`)."""
    folds_record = {
        "folds": f"{FOLDS}, stratified, seed {SEED}",
        "early_stopping": "a stratified 10% of each training fold (first view only)",
    }
    return {
        "mode": "fast: frozen ImageNet body, cached pooled features, 512-unit head trained on them",
        "head": asdict(HEAD),
        **(folds_record if cross_validation else {}),
        "variants": [{"name": v.name, **asdict(v)} for v in variants],
        **extra,
    }


def labels_of(patches: Sequence[Patch], num_classes: int) -> np.ndarray:
    """``(P,)`` class indices of single-type patches."""
    return patch_targets(patches, num_classes, multi_label=False)


def crop_patches(root: Path, smoke: bool) -> tuple[list[str], list[Path], list[Patch], np.ndarray]:
    """Class names, image paths, whole-crop patches and their labels of a crop-folder dataset (``smoke``: the
    first 4 crops of each class).
    """
    data = read_folders(root)
    patches = dataset_patches(data.images)
    labels = labels_of(patches, len(data.classes))
    if smoke:
        keep = np.concatenate([np.flatnonzero(labels == c)[:4] for c in range(len(data.classes))])
        patches, labels = [patches[i] for i in keep], labels[keep]
    return data.classes, [image.path for image in data.images], patches, labels


def crop_folder_cv(
    args: argparse.Namespace,
    root: Path,
    variants: Sequence[Variant],
    score: Callable | None = None,
) -> tuple[dict[str, Any], list[str], int]:
    """Cross-validation of every variant on a crop-folder dataset, and the extraction cost of the first.

    Returns:
        Per variant its folds and means (``centred`` test patches) and, for the first, ``cost``; the class
        names; the number of patches.

    """
    classes, paths, patches, labels = crop_patches(root, args.smoke)
    splits = folds(labels, 2 if args.smoke else FOLDS)
    out = args.out / ("smoke" if args.smoke else "full")
    figures: dict[str, Any] = {}
    for variant in variants:
        part = out / variant.name
        views = max(variant.train_views, variant.test_views)
        feats = features(variant, paths, patches, views, args.cache, part / "features.json")
        tests = {"centred": feats[:, : variant.test_views]}
        result = cross_validate(
            part, variant.backbone, feats[:, : variant.train_views], tests, labels, classes, splits, score
        )
        if variant == variants[0]:
            result["cost"] = extraction_cost(variant, paths, patches, part)
        figures[variant.name] = result
    return figures, classes, len(patches)


def crop_folder_benchmark(
    name: str, description: str, root: Path, variants: Sequence[Variant], patches: str, published: dict[str, Any]
) -> None:
    """The whole command of a crop-folder benchmark: options, :func:`crop_folder_cv` of ``variants`` (``--smoke``:
    the first at input 64), and the result file with the first variant's mean figures on its test views as the
    headline, against the target accuracy 0.97.

    Args:
        name: The benchmark (its result file's stem; its parts under ``/tmp/cytolens-bench/<name>`` by default).
        description: The command's description.
        root: The crop folders.
        variants: What to run, the headline first.
        patches: How patches are cut, for the settings record.
        published: The published method and figures it is compared with.

    """
    args = arguments(description, f"/tmp/cytolens-bench/{name}").parse_args()
    common.setup(args.threads)
    start = time.perf_counter()
    variants = [replace(variants[0], size=64)] if args.smoke else list(variants)
    figures, classes, count = crop_folder_cv(args, root, variants)
    first = variants[0]
    headline = figures[first.name]["mean"]["centred"][f"views_{first.test_views}"]
    common.write_result(
        name,
        {"headline": {"variant": first.name, "test_views": first.test_views, **headline}, "variants": figures},
        {"accuracy": common.target(headline["accuracy"]["mean"], 0.97)},
        folder=args.out / "smoke" if args.smoke else common.RESULTS,
        **minutes(args.out / ("smoke" if args.smoke else "full"), start),
        settings=settings(variants, patches=patches, images=count),
        classes=classes,
        published=published,
    )


def per_class_f1(truth: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """The headline figures and the F1 of each class."""
    figures = classification_metrics(truth, probabilities, classes)
    return {**summary(figures), "per_class_f1": {name: row["f1"] for name, row in figures["per_class"].items()}}


def minutes(out: Path, start: float) -> dict[str, Any]:
    """Wall minutes of this session (since ``start``, a ``time.perf_counter()``) added to those of the earlier
    sessions on the same ``out`` folder (``out/sessions.json``): what the whole benchmark took.
    """
    record = out / "sessions.json"
    sessions = [*(common.read_json(record) if record.is_file() else []), round((time.perf_counter() - start) / 60, 1)]
    common.write_json(record, sessions)
    return {"minutes": round(sum(sessions), 1), "minutes_by_session": sessions}
