"""PBC white blood cells, 8 classes, 5-fold cross-validation, fast mode (issue 11).

    python benchmarks/classification_pbc.py [--out DIR] [--cache DIR] [--smoke]

``../shared/datasets/pbc-wbc``: a seeded subset of 250 crops per class (1,999 files, 360x363, CellaVision
DM96, May-Grünwald-Giemsa) of the PBC set; each patch is the whole crop (the cell is centred in it). Folds are
stratified and seeded; a head is trained on the frozen ImageNet features of each training fold (see
``classification_common``). Reported: accuracy and macro-F1 (and the per-class F1) on 1 test view and on 4
(the patch, its flip and two rotations), with one training view per patch. Target: accuracy >= 0.97 (published
CNNs: about 0.96-0.99; Acevedo et al. 2019, VGG-16 fine-tuned, 0.96). Results:
``benchmarks/results/classification_pbc.json``.
"""

from __future__ import annotations

import classification_common as cc

NAME = "classification_pbc"
DATA = cc.DATASETS / "pbc-wbc"
VARIANTS = [cc.Variant(train_views=1, test_views=4)]
"""One training view (8 gave nothing more on Herlev), scored on 1 test view and on 4."""


def main() -> None:
    cc.crop_folder_benchmark(
        NAME, __doc__.splitlines()[0], DATA, VARIANTS,
        patches="whole crop (cell centred by the source)",
        published={"method": "VGG-16 fine-tuned (Acevedo et al. 2019)", "accuracy": 0.96},
    )  # fmt: skip


if __name__ == "__main__":
    main()
