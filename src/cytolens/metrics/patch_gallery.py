"""The misclassified patches of a classifier: which come first, their pictures and their captions.

A patch is misclassified when the types called differ from the types it holds. The most confident mistakes
come first: patches are ranked by the largest gap between the probability of a type called or missed in
error and its truth (1 for a type held, 0 otherwise), so a wrong call at 0.98 precedes one at 0.55.
"""

from __future__ import annotations

import numpy as np

from cytolens.data.patches import crop_patch
from cytolens.io.images import read_image
from cytolens.metrics.patch_classification import ScoredPatches


def misclassified(scored: ScoredPatches, count: int) -> list[int]:
    """Indices of up to ``count`` misclassified patches, the most confident mistakes first (ties in patch order)."""
    truth = scored.truth
    gap = np.where(scored.calls != truth, np.abs(scored.scores - truth), 0.0).max(axis=1, initial=0.0)
    wrong = np.flatnonzero(scored.wrong())
    return wrong[np.argsort(-gap[wrong], kind="stable")][:count].tolist()


def patch_pictures(scored: ScoredPatches, indices: list[int], size: int = 128) -> list[np.ndarray]:
    """The ``(size, size, 3)`` pictures of patches ``indices``, cut from their images as the classifier saw them
    (the window resampled, its part outside the image mirrored in); each image is read once.

    Raises:
        DataError: If an image cannot be read.

    """
    pixels: dict[int, np.ndarray] = {}
    pictures = []
    for index in indices:
        patch = scored.patches[index]
        if patch.image not in pixels:
            pixels[patch.image] = read_image(scored.images[patch.image].path)
        pictures.append(crop_patch(pixels[patch.image], patch.centre, patch.side, size))
    return pictures


def caption(scored: ScoredPatches, index: int) -> str:
    """What patch ``index`` is: its image (and where, for a cell of a larger image), its true and called types, and
    the probability of each (e.g. ``"12/3 at (140, 96): true HSIL, called NILM; NILM 0.91, HSIL 0.06"``).
    """
    patch = scored.patches[index]
    where = scored.images[patch.image].image_id
    if patch.cells:
        where += f" at ({patch.centre[0]:.0f}, {patch.centre[1]:.0f})"
    true = list(patch.labels)
    called = np.flatnonzero(scored.calls[index]).tolist()

    def names(labels: list[int]) -> str:
        return " + ".join(scored.classes[label] for label in labels) or "none"

    shown = sorted(set(true) | set(called), key=lambda label: -scored.scores[index, label])
    probabilities = ", ".join(f"{scored.classes[label]} {scored.scores[index, label]:.2f}" for label in shown)
    return f"{where}: true {names(true)}, called {names(called)}; {probabilities}"
