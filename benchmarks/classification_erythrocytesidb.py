"""erythrocytesIDB sickle-cell-disease red cells, 3 classes, 5-fold cross-validation, fast mode (issue 11).

    python benchmarks/classification_erythrocytesidb.py [--out DIR] [--cache DIR] [--smoke]

``../shared/datasets/erythrocytesidb``: 626 crops of 80x80 px in the classes ``circular``, ``elongated``
(sickle) and ``other``; each patch is the whole crop (one cell, centred by the source), resampled to the network
input. Folds are stratified and seeded; a head is trained on the frozen ImageNet features of each training fold
(see ``classification_common``). Reported: accuracy and per-class F1 (and macro-F1) on 1 test view and on 4 (the
patch, its flip and two rotations), with one training view per patch; and with 8 training views, scored on 1 and
8. Target: accuracy >= 0.97 (published CNNs: 0.98-0.995, e.g. Alzubaidi et al. 2020). Results:
``benchmarks/results/classification_erythrocytesidb.json``.
"""

from __future__ import annotations

import classification_common as cc

NAME = "classification_erythrocytesidb"
DATA = cc.DATASETS / "erythrocytesidb"
VARIANTS = [cc.Variant(train_views=1, test_views=4), cc.Variant(train_views=8, test_views=8)]
"""One training view (8 gave nothing more on Herlev), scored on 1 test view and on 4; then 8 and 8 (these
rotation-free crops gain from the views)."""


def main() -> None:
    cc.crop_folder_benchmark(
        NAME, __doc__.splitlines()[0], DATA, VARIANTS,
        patches="whole 80x80 crop (one cell, centred by the source)",
        published={"method": "CNNs (e.g. Alzubaidi et al. 2020)", "accuracy": [0.98, 0.995]},
    )  # fmt: skip


if __name__ == "__main__":
    main()
