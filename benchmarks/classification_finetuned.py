"""Fine-tuned patch classifiers, 5-fold cross-validation, on the crop-folder benchmarks of issue 11.

    python benchmarks/classification_finetuned.py DATASET [--out DIR] [--folds 5] [--smoke]

DATASET is one of :data:`DATASETS` (``erythrocytesidb``, ``pbc``, ``herlev``); its recipe is
``benchmarks/recipes/<DATASET>.yaml`` (an ImageNet EfficientNet-Lite0 fine-tuned end to end, see the file).
``cytolens train --recipe ... --folds K`` trains one model per fold (stratified, seeded folds of every crop;
each fold's model is its last epoch, so the held-out fold never chooses a model). Each fold's model then
classifies its held-out crops with 1 test view and with the recipe's test-time views (the dihedral
group), and the figures (accuracy, macro-F1, per-class F1, ROC-AUC; for Herlev also normal vs abnormal) are
averaged over the folds as mean ± std. Cost: training minutes, and milliseconds per patch with 1 view and with
all views (fold 0's model, batch of 32 patches, after a warm-up), to set beside the fast mode's figures in
``classification_<DATASET>.json``.

Resumable: an interrupted run continues its folds (``--resume`` of ``train --folds``), each fold's scores are kept
under ``--out``. Results: ``benchmarks/results/classification_finetuned_<DATASET>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import common
from cytolens.data.annotations import Dataset
from cytolens.inference.evaluate import evaluate_classifier
from cytolens.inference.model import Model, load_model
from cytolens.inference.pipeline import Pipeline
from cytolens.io.spec import load_data
from cytolens.metrics.classification import aggregate_folds
from cytolens.models.checkpoint import read_card
from cytolens.training.cross_validation import cross_validate, fold_data
from cytolens.training.recipe import Recipe

HERLEV_ABNORMAL = ("light_dysplastic", "moderate_dysplastic", "severe_dysplastic", "carcinoma_in_situ")


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One dataset's benchmark: its target accuracy (of the yes/no question of ``positive`` when given, else of the
    classes) and, optionally, the classes making that question."""

    target_accuracy: float
    published: dict[str, Any]
    positive: tuple[str, ...] | None = None
    target_auc: float | None = None
    target_f1: float | None = None
    model: str | None = None
    """A bundled model (a pipeline: its classifier) scored on the ``test`` split of ``data``, instead of
    cross-validating the dataset's recipe."""
    data: str | None = None


DATASETS = {
    "erythrocytesidb": Benchmark(0.97, {"method": "CNNs (e.g. Alzubaidi et al. 2020)", "accuracy": [0.98, 0.995]}),
    "pbc": Benchmark(0.97, {"method": "VGG-16 fine-tuned (Acevedo et al. 2019)", "accuracy": 0.96}),
    "herlev": Benchmark(
        0.983,
        {"method": "DeepPap (Zhang et al. 2017), nucleus-centred patches", "accuracy": 0.983, "auc": 0.998},
        positive=HERLEV_ABNORMAL,
        target_auc=0.995,
    ),
    "chula": Benchmark(
        0.93,
        {"method": "EfficientNet-B1 (Naruenatthanaset et al. 2021)", "accuracy": 0.921, "f1": 0.868},
        target_f1=0.88,
        model="rbc-morphology",
        data="configs/chula-split.yaml",
    ),
}
"""The datasets with a recipe under ``benchmarks/recipes``, and Chula RBC-12's single-cell patches around the
given centres, scored with the bundled ``rbc-morphology`` pipeline's classifier (trained on the checked-in
split's training images, ``configs/chula-cells.yaml``); targets from issue 11."""

FIGURES = ("accuracy", "f1", "weighted_f1", "auc", "per_class", "positive")
"""The figures of each fold kept in the result (the confusion matrices stay in the per-fold files)."""


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--out", type=Path, default=Path("/tmp/cytolens-bench/classification_finetuned"),
                        help="folds and finished parts (rerun continues them)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="2 folds of a few steps: a check of the script")
    return parser.parse_args()


def held_out_scores(classifier: Model, truth: Dataset, benchmark: Benchmark, views: int) -> dict[str, Any]:
    """The figures of a classifier on held-out patches, averaging ``views`` test-time views."""
    evaluation = evaluate_classifier(classifier.with_views(views), truth, positive=benchmark.positive, progress=False)
    return {key: value for key, value in evaluation.figures.items() if key in FIGURES}


def ms_per_patch(classifier: Model, truth: Dataset, views: int, images: int = 32) -> dict[str, float]:
    """Wall milliseconds per patch of classifying the patches of ``images`` images with ``views`` views (after a
    warm-up), image by image as ``evaluate`` does, with the machine's load (other jobs slow it down)."""
    model = classifier.with_views(views)
    sample = dataclasses.replace(truth, images=truth.images[:images])
    evaluate_classifier(model, sample, progress=False)
    start = time.perf_counter()
    evaluation = evaluate_classifier(model, sample, progress=False)
    return {
        "ms": 1000 * (time.perf_counter() - start) / evaluation.figures["patches"],
        "patches": evaluation.figures["patches"],
        "load_average_1min": os.getloadavg()[0],
    }


def mean_of(figure: float | dict[str, float]) -> float:
    """A figure of one test split, or the mean of a cross-validated one."""
    return figure["mean"] if isinstance(figure, dict) else figure


def cross_validated(args: argparse.Namespace, benchmark: Benchmark, out: Path) -> dict[str, Any]:
    """Train the dataset's recipe on every fold (resumably) and score each fold's model on its held-out crops."""
    recipe = Recipe.from_yaml(common.BENCHMARKS / "recipes" / f"{args.dataset}.yaml")
    views = recipe.patches.views
    folds = 2 if args.smoke else args.folds
    summary = common.once(
        out / "cv-done.json",
        lambda: cross_validate(recipe, out / "cv", folds, resume=(out / "cv").is_dir(),
                               max_steps=3 if args.smoke else -1, progress=False),
    )
    data, _ = fold_data(recipe, folds)
    per_fold = []
    for k, fold in enumerate(summary["per_fold"]):
        truth = data.subset(f"fold{k}")
        if args.smoke:
            truth = dataclasses.replace(truth, images=truth.images[:8])
        per_fold.append({
            "fold": fold["fold"],
            "val_images": fold["val_images"],
            **{
                f"views_{count}": common.once(
                    out / f"scores-fold{k}-views{count}.json",
                    lambda truth=truth, fold=fold, count=count: held_out_scores(
                        load_model(fold["model"]), truth, benchmark, count
                    ),
                )
                for count in (1, views)
            },
        })
    models = [Path(fold["model"]) for fold in summary["per_fold"]]
    minutes = [read_card(model)[0].provenance.training_minutes for model in models]
    return {
        "views": views,
        "mean": {key: aggregate_folds([fold[key] for fold in per_fold]) for key in ("views_1", f"views_{views}")},
        "per_fold": per_fold,
        "ms_per_patch": common.once(
            out / "cost.json",
            lambda: {f"views_{count}": ms_per_patch(load_model(models[0]), data.subset("fold0"), count)
                     for count in (1, views)},
        ),
        "training_minutes": {"folds": minutes, "total": None if None in minutes else round(sum(minutes), 1)},
        "recipe": f"benchmarks/recipes/{args.dataset}.yaml",
        "folds": folds,
    }


def on_test_split(args: argparse.Namespace, benchmark: Benchmark, out: Path) -> dict[str, Any]:
    """Score the benchmark's model on the test split of its data, with 1 view and with the model's views."""
    loaded = load_model(benchmark.model)
    classifier = loaded.classifier if isinstance(loaded, Pipeline) else loaded
    views = classifier.card.patch.views
    truth = load_data(common.REPO / benchmark.data).subset("test")
    if args.smoke:
        truth = dataclasses.replace(truth, images=truth.images[:2])
    counts = (1, views)
    return {
        "views": views,
        "model": benchmark.model,
        "test_images": len(truth),
        "mean": {
            f"views_{count}": common.once(
                out / f"scores-views{count}.json",
                lambda count=count: held_out_scores(classifier, truth, benchmark, count),
            )
            for count in counts
        },
        "ms_per_patch": common.once(
            out / "cost.json", lambda: {f"views_{count}": ms_per_patch(classifier, truth, count, 2) for count in counts}
        ),
    }


def main() -> None:
    args = arguments()
    common.setup()
    benchmark = DATASETS[args.dataset]
    out = args.out / ("smoke" if args.smoke else "full") / args.dataset
    start = time.perf_counter()
    figures = (on_test_split if benchmark.model else cross_validated)(args, benchmark, out)
    headline = figures["mean"][f"views_{figures['views']}"]
    if benchmark.positive:  # the targets are those of the yes/no question (Herlev: normal vs abnormal)
        binary = headline["positive"]
        targets = {"positive_accuracy": common.target(mean_of(binary["accuracy"]), benchmark.target_accuracy)}
        if benchmark.target_auc is not None:
            targets["positive_auc"] = common.target(mean_of(binary["auc"]), benchmark.target_auc)
    else:
        targets = {"accuracy": common.target(mean_of(headline["accuracy"]), benchmark.target_accuracy)}
    if benchmark.target_f1 is not None:
        targets["macro_f1"] = common.target(mean_of(headline["f1"]), benchmark.target_f1)
    common.write_result(
        f"classification_finetuned_{args.dataset}",
        figures,
        targets,
        folder=args.out / "smoke" if args.smoke else common.RESULTS,
        minutes_this_session=round((time.perf_counter() - start) / 60, 1),
        positive=list(benchmark.positive) if benchmark.positive else None,
        published=benchmark.published,
    )


if __name__ == "__main__":
    main()
