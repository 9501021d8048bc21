"""Herlev Pap-smear cells, normal against abnormal and the 7 classes, 5-fold cross-validation, fast mode (issue 11).

    python benchmarks/classification_herlev.py [--out DIR] [--cache DIR] [--smoke]

Herlev (``../shared/datasets/herlev``: 837 single-cell crops, 40-768 px, in 7 class folders) has no masks,
so each patch is the whole crop: centred on the crop's centre, of side its longer side (the shorter one
filled by mirrored pixels), resampled to the network input. Normal: ``normal_superficiel``,
``normal_intermediate``, ``normal_columnar``; abnormal: the four dysplasia and carcinoma classes.

Per fold (stratified on the 7 classes, seeded; the same folds for every part) a 2-class head gives the
screening figures, abnormal being positive: sensitivity, specificity, accuracy, H-mean, F1 and ROC-AUC; a
7-class head gives the 7-class accuracy and macro-F1 (and the same screening figures from its summed
abnormal probabilities). Jitter: the trained 2-class heads score the test patches (one view) with their
centre moved by a seeded random offset, uniform in ±5 and ±10 px along each axis (DeepPap jittered the
nucleus centre by up to 10 px). Variants: the main one (EfficientNet-Lite0, input 224, 8 training views,
scored on 1 test view and on 8: test-time aggregation), then on one view each Lite0 against Lite2 and input
224 against 320. Published (DeepPap, same
protocol, nucleus-centred patches from Herlev's masks): sensitivity 0.982, specificity 0.983, accuracy
0.983, H-mean 0.983, AUC 0.998. Results: ``benchmarks/results/classification_herlev.json``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

import classification_common as cc
import common
from cytolens.data.patches import Patch
from cytolens.metrics.classification import classification_metrics

NAME = "classification_herlev"
DATA = cc.DATASETS / "herlev"
BINARY = ["normal", "abnormal"]
MAIN = cc.Variant()
ONE_VIEW = dataclasses.replace(MAIN, train_views=1, test_views=1)
VARIANTS = [
    MAIN,
    ONE_VIEW,
    dataclasses.replace(ONE_VIEW, backbone="tf_efficientnet_lite2"),
    dataclasses.replace(ONE_VIEW, size=320),
    dataclasses.replace(ONE_VIEW, backbone="tf_efficientnet_lite2", size=320),
]
"""The main variant (8 training views, scored on 1 and 8 test views), then the body and input size compared on one
view (the features of one view cost an eighth of eight)."""
JITTER = (5.0, 10.0)
PUBLISHED = {
    "method": "DeepPap (Zhang et al., IEEE JBHI 2017), nucleus-centred patches, fine-tuned CNN",
    "sensitivity": 0.982,
    "specificity": 0.983,
    "accuracy": 0.983,
    "h_mean": 0.983,
    "f_measure": 0.988,
    "auc": 0.998,
    "accuracy_jitter_10px": 0.978,
}


def binary(truth: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """Screening figures with abnormal positive (class 1)."""
    figures = classification_metrics(truth, probabilities, BINARY)
    abnormal = figures["per_class"]["abnormal"]
    sensitivity, specificity = abnormal["sensitivity"], abnormal["specificity"]
    return {
        "accuracy": figures["accuracy"],
        "sensitivity": sensitivity,
        "specificity": specificity,
        "h_mean": 2 * sensitivity * specificity / (sensitivity + specificity),
        "f1": abnormal["f1"],
        "auc": figures["auc"],
    }


def main() -> None:
    args = cc.arguments(__doc__.splitlines()[0], "/tmp/cytolens-bench/classification_herlev").parse_args()
    common.setup(args.threads)
    start = time.perf_counter()
    classes, paths, patches, seven = cc.crop_patches(DATA, args.smoke)
    abnormal = np.array([not name.startswith("normal_") for name in classes])
    labels = abnormal[seven].astype(np.int64)
    splits = cc.folds(seven, 2 if args.smoke else cc.FOLDS)
    variants = [dataclasses.replace(MAIN, size=64)] if args.smoke else VARIANTS
    out = args.out / ("smoke" if args.smoke else "full")

    def seven_class(truth: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
        summed = np.stack([probabilities[:, ~abnormal].sum(1), probabilities[:, abnormal].sum(1)], axis=1)
        figures = classification_metrics(truth, probabilities, classes)
        return {**cc.summary(figures), "binary_from_summed": binary(abnormal[truth].astype(np.int64), summed)}

    figures: dict[str, Any] = {"variants": {}}
    for variant in variants:
        part = out / variant.name
        views = max(variant.train_views, variant.test_views)
        feats = cc.features(variant, paths, patches, views, args.cache, part / "features.json")
        train, tests = feats[:, : variant.train_views], {"centred": feats[:, : variant.test_views]}
        if variant == variants[0]:
            for shift in JITTER:
                moved = jittered(patches, shift)
                record = part / f"jitter{shift:g}-features.json"
                tests[f"jitter{shift:g}px"] = cc.features(variant, paths, moved, 1, args.cache, record)
        result = {
            "binary": cc.cross_validate(part / "binary", variant.backbone, train, tests, labels, BINARY, splits, binary)
        }
        if variant == variants[0]:
            result["seven_class"] = cc.cross_validate(
                part / "seven",
                variant.backbone,
                train,
                {"centred": tests["centred"]},
                seven,
                classes,
                splits,
                seven_class,
            )
            result["cost"] = cc.extraction_cost(variant, paths, patches, part)
        figures["variants"][variant.name] = result
    main_result = figures["variants"][variants[0].name]
    headline = main_result["binary"]["mean"]["centred"][f"views_{variants[0].test_views}"]
    targets = {
        "accuracy": common.target(headline["accuracy"]["mean"], 0.983),
        "auc": common.target(headline["auc"]["mean"], 0.995),
    }
    figures["headline"] = {"variant": variants[0].name, "test_views": variants[0].test_views, **headline}
    common.write_result(
        NAME,
        figures,
        targets,
        folder=out if args.smoke else common.RESULTS,
        **cc.minutes(out, start),
        settings=cc.settings(
            variants,
            patches="whole crop: centre = crop centre, side = longer side (mirrored fill), no masks",
            jitter="test patch centres moved by seeded uniform offsets in ±N px per axis; heads trained unjittered",
            abnormal=[name for name, flag in zip(classes, abnormal, strict=True) if flag],
            images=len(patches),
        ),
        published=PUBLISHED,
    )


def jittered(patches: list[Patch], shift: float) -> list[Patch]:
    """The patches with their centres moved by a seeded offset, uniform in ``±shift`` pixels along each axis."""
    offsets = np.random.default_rng(cc.SEED + int(shift)).uniform(-shift, shift, size=(len(patches), 2))
    return [
        dataclasses.replace(patch, centre=(patch.centre[0] + dx, patch.centre[1] + dy))
        for patch, (dx, dy) in zip(patches, offsets, strict=True)
    ]


if __name__ == "__main__":
    main()
