"""Chula RBC-12 single-cell patches around the labelled centres, 13 classes, fast mode (issue 11).

    python benchmarks/classification_chula.py [--out DIR] [--cache DIR] [--smoke]

The splits of the checked-in ``configs/chula-split.yaml`` (train 366 images, 12,422 cells; val 52, 2,107; test
105, 3,527): every labelled cell gives a square patch of ``side`` pixels around its given centre (neighbouring
red cells are about 44 px apart in these 640x480 fields), resampled to the network input; patches reaching past
the image edge are filled by mirrored pixels. A head on the frozen ImageNet features (see
``classification_common``) is trained on the train patches (each of their views a sample), stopped early on the
val patches (first view), and scored on the test patches on 1 view and on 4: accuracy, macro-F1 over the 13
classes and the per-class F1. Windows of 64 px at input 128, and at input 224 (one view). Heads with
class-balanced weights (rare types weigh as much as common ones) and without. Targets: accuracy >= 0.93, macro-F1 >=
0.88 (published, EfficientNet-B1 on segmented cells: accuracy 0.921, F1 0.868). Results:
``benchmarks/results/classification_chula.json``.
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial
from pathlib import Path
from typing import Any

import classification_common as cc
import common
from cytolens.data.annotations import Dataset
from cytolens.data.patches import dataset_patches
from cytolens.io.spec import load_data

NAME = "classification_chula"
SPEC = common.REPO / "configs" / "chula-split.yaml"
MAIN = cc.Variant(side=64.0, size=128, train_views=1, test_views=4)
VARIANTS = [MAIN, dataclasses.replace(MAIN, size=224, test_views=1)]
"""64-pixel windows at input 128 (scored on 1 and 4 test views), then at input 224 (on one)."""
HEADS = {"balanced": cc.HEAD, "unbalanced": dataclasses.replace(cc.HEAD, balance="none")}
SMOKE_IMAGES = 3
PUBLISHED = {
    "method": "EfficientNet-B1 on segmented cells (Naruenatthanaset et al. 2021)",
    "accuracy": 0.921,
    "f1": 0.868,
}


def main() -> None:
    args = cc.arguments(__doc__.splitlines()[0], "/tmp/cytolens-bench/classification_chula").parse_args()
    common.setup(args.threads)
    start = time.perf_counter()
    variants = [dataclasses.replace(MAIN, size=64)] if args.smoke else VARIANTS
    out = args.out / ("smoke" if args.smoke else "full")
    data = {split: load_data(SPEC, split=split) for split in ("train", "val", "test")}
    if args.smoke:
        data = {split: dataclasses.replace(part, images=part.images[:SMOKE_IMAGES]) for split, part in data.items()}
    classes = data["train"].classes
    figures: dict[str, Any] = {"variants": {}}
    for variant in variants:
        figures["variants"][variant.name] = run_variant(variant, data, classes, out / variant.name, args.cache)
    first = figures["variants"][variants[0].name]
    headline = first["heads"]["balanced"][f"views_{variants[0].test_views}"]
    figures = {
        "headline": {"variant": variants[0].name, "head": "balanced", "test_views": variants[0].test_views, **headline},
        "patches": first["patches"],
        **figures,
    }
    common.write_result(
        NAME,
        figures,
        {
            "accuracy": common.target(headline["accuracy"], 0.93),
            "macro_f1": common.target(headline["f1"], 0.88),
        },
        folder=out if args.smoke else common.RESULTS,
        **cc.minutes(out, start),
        settings=cc.settings(
            variants,
            cross_validation=False,
            early_stopping="the val split (first view only)",
            heads={name: dataclasses.asdict(settings) for name, settings in HEADS.items()},
            patches="square of the variant's side around each labelled centre (mirrored past the edge)",
            splits="train / val / test of configs/chula-split.yaml",
        ),
        classes=classes,
        published=PUBLISHED,
    )


def run_variant(
    variant: cc.Variant, data: dict[str, Dataset], classes: list[str], part: Path, cache: Path | None
) -> dict[str, Any]:
    """Features of the three splits, each head trained on train (stopped on val) and scored on test, and the
    extraction cost on the test patches.
    """
    splits = {}
    for split, views in (("train", variant.train_views), ("val", 1), ("test", variant.test_views)):
        patches = dataset_patches(data[split].images, side=variant.side)
        paths = [image.path for image in data[split].images]
        feats = cc.features(variant, paths, patches, views, cache, part / f"{split}-features.json")
        splits[split] = (paths, patches, feats, cc.labels_of(patches, len(classes)))
    (_, _, train, train_labels), (_, _, val, val_labels), (paths, patches, test, test_labels) = splits.values()
    result: dict[str, Any] = {"patches": {split: len(values[1]) for split, values in splits.items()}, "heads": {}}
    for name, settings in HEADS.items():

        def run(settings: cc.HeadSettings = settings) -> dict[str, Any]:
            model, info = cc.fit_head(train, train_labels, len(classes), variant.backbone, (val, val_labels), settings)
            return {**cc.scored(model, test, test_labels, partial(cc.per_class_f1, classes=classes)), **info}

        result["heads"][name] = common.once(part / f"head-{name}.json", run)
    result["cost"] = cc.extraction_cost(variant, paths, patches, part)
    return result


if __name__ == "__main__":
    main()
