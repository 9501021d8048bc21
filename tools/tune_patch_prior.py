r"""Choose how far a single-label patch classifier trained with class-balanced sampling is pulled back to its
training class frequencies (:class:`~cytolens.models.card.PatchThresholds` ``class_prior`` and ``prior_power``).

The training split gives each type's share of the labelled patches; the tuning split's patches are classified
once (probabilities averaged over the model's test-time views), and the power τ with the best mean of accuracy
and macro-F1 on them is written into the model's card, with the shares (weights as stored)::

    python tools/tune_patch_prior.py runs/chula-cells/model.pt --data configs/chula-split.yaml \
        --train-split train --tune-split val --out chula-cells.pt
"""

from __future__ import annotations

import argparse
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

from cytolens.data.annotations import Dataset
from cytolens.inference.evaluate import classify_patches
from cytolens.inference.model import load_model
from cytolens.io.spec import load_data
from cytolens.models.checkpoint import update_metadata

POWERS = (0.0, 0.25, 0.5, 0.75, 1.0)


def class_shares(data: Dataset) -> dict[str, float]:
    """Each class's share of the labelled cells (or, for crops, of the image labels) of ``data``."""
    counts = Counter(
        int(label) for image in data.images for label in [*image.cells.labels.tolist(), *image.image_labels]
        if label >= 0
    )  # fmt: skip
    total = sum(counts.values())
    return {name: counts[index] / total for index, name in enumerate(data.classes)}


def main() -> None:
    """Tune and write the prior power as the command line says."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("model", type=Path, help="a single-label patch classifier (model.pt)")
    parser.add_argument("--data", required=True, help="its data (spec or folder)")
    parser.add_argument("--format", default=None)
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--tune-split", default="val")
    parser.add_argument("--powers", type=float, nargs="+", default=list(POWERS))
    parser.add_argument("--out", type=Path, required=True, help="output file (a copy of the model, card updated)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    shares = class_shares(load_data(args.data, args.format, args.train_split))
    model = load_model(args.model, device="cpu").with_thresholds(class_prior=shares, prior_power=0.0)
    scored = classify_patches(model, load_data(args.data, args.format, args.tune_split), progress=False)
    known = len(model.classes)
    truth = np.array([patch.labels[0] for patch in scored.patches])
    figures = {}
    for power in args.powers:
        called = replace(model.thresholds, prior_power=power).adjust(scored.scores[:, :known], model.classes).argmax(1)
        accuracy, macro = accuracy_score(truth, called), f1_score(truth, called, average="macro")
        figures[power] = (accuracy + macro) / 2
        print(f"prior power {power}: accuracy {accuracy:.4f}, macro-F1 {macro:.4f}")
    best = max(figures, key=figures.get)
    tuned = replace(
        model.thresholds, prior_power=best,
        tuned_on=f"{args.tune_split} split: prior power {best} of {args.powers}, best mean of accuracy and macro-F1",
    )  # fmt: skip
    shutil.copyfile(args.model, args.out)
    update_metadata(args.out, {"thresholds": tuned.to_dict()})
    print(f"wrote {args.out}: prior power {best}")


if __name__ == "__main__":
    main()
