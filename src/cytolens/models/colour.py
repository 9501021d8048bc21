"""How far an image's colours lie from those of a model's training images, to warn about foreign input.

A blood-smear model run on an H&E section still reports hundreds of "red cells". The model card therefore
holds :class:`~cytolens.models.card.ColourStats` of its training images (``card.input.colour``: the mean
colour of a sample of them in CIELAB, and how much the images' mean colours vary), and
:func:`colour_distance` says how far an image lies from them: the root mean square, over L*, a* and b*,
of the distance between the image's mean colour and the training images', each in units of the training
images' spread. A spread is taken as at least :data:`MIN_SPREAD`, so that a model trained on a few
look-alike images does not flag every other image.

Measured under the bundled models' cards (50 training images each; images above :data:`FOREIGN_COLOUR`,
and the median, largest or smallest distance). The Chula column holds for ``rbc-morphology-points`` and for
the bundled ``rbc-morphology`` pipeline alike: a pipeline checks an image against its detector's card, and
that detector's statistics, like its classifier's, were taken on the same 50 Chula RBC-12 ``train`` images
as ``rbc-morphology-points``' and are the same numbers.

=========================  ====================================  ====================================
images                     blood-cells (BCCD-TXL train)          Chula models (Chula RBC-12 train)
=========================  ====================================  ====================================
BCCD test (72)             0 (0 %); median 1.05, max 2.34        0 (0 %); median 1.44, max 1.85
Chula RBC-12 test (105)    103 (98 %); median 7.05, min 2.57     3 (3 %); median 0.71, max 3.03
CRCHistoPhenotypes (80)    80 (100 %); median 10.7, min 6.45     79 (99 %); median 4.08, min 2.64
=========================  ====================================  ====================================

Lighting and stain vary more between Chula RBC-12 fields than between BCCD ones, so a model trained on
Chula RBC-12 tolerates more (its spread is larger).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from skimage.color import rgb2lab

from cytolens.data.annotations import Dataset
from cytolens.io.images import read_image
from cytolens.models.card import ColourStats

SAMPLE_IMAGES = 50
"""Training images sampled (evenly over the dataset) for the colour statistics."""
MAX_PIXELS = 1 << 18
"""An image's mean colour is taken on a regular grid of at most this many of its pixels."""
MIN_SPREAD = 1.0
"""Smallest spread (CIELAB units) :func:`colour_distance` divides by."""
FOREIGN_COLOUR = 3.0
"""Distance (:func:`colour_distance`) above which an image's colours are foreign to the model's training images."""


def mean_colour(pixels: np.ndarray) -> np.ndarray:
    """The mean CIELAB colour (L*, a*, b*) of an RGB image, on a regular grid of at most :data:`MAX_PIXELS` pixels.

    Args:
        pixels: ``(H, W, 3)`` RGB image, ``uint8`` (or floats in [0, 1]).

    Returns:
        ``(3,)`` float64: L* (0-100), a*, b*.

    Raises:
        ValueError: If ``pixels`` is not an ``(H, W, 3)`` image with at least one pixel.

    """
    if pixels.ndim != 3 or pixels.shape[2] != 3 or not pixels.size:
        raise ValueError(f"an RGB image of shape (H, W, 3) is needed, not {pixels.shape}")
    step = max(1, int(np.ceil(np.sqrt(pixels.shape[0] * pixels.shape[1] / MAX_PIXELS))))
    return rgb2lab(pixels[::step, ::step]).reshape(-1, 3).mean(axis=0)


def colour_statistics(images: Iterable[np.ndarray]) -> ColourStats:
    """The colour statistics of RGB images (each weighs the same, whatever its size).

    Raises:
        ValueError: If there is no image.

    """
    means = np.array([mean_colour(pixels) for pixels in images])
    if not len(means):
        raise ValueError("colour statistics need at least one image")
    mean, spread = means.mean(axis=0), means.std(axis=0)
    return ColourStats(
        mean=(float(mean[0]), float(mean[1]), float(mean[2])),
        spread=(float(spread[0]), float(spread[1]), float(spread[2])),
        images=len(means),
    )


def dataset_colour(dataset: Dataset, limit: int = SAMPLE_IMAGES) -> ColourStats | None:
    """The colour statistics of at most ``limit`` images spread evenly over ``dataset`` (``None`` if it has none).

    Raises:
        DataError: If an image cannot be read.

    """
    if not len(dataset):
        return None
    chosen = np.unique(np.linspace(0, len(dataset) - 1, min(limit, len(dataset))).round().astype(int))
    return colour_statistics(read_image(dataset.images[index].path) for index in chosen)


def colour_distance(stats: ColourStats, pixels: np.ndarray) -> float:
    """How far an image's mean colour lies from the training images' (see the module documentation).

    Args:
        stats: The colour statistics of the model's training images (``card.input.colour``).
        pixels: ``(H, W, 3)`` RGB image.

    Returns:
        Root mean square over L*, a*, b* of ``|image mean - training mean| / max(spread, MIN_SPREAD)``;
        above :data:`FOREIGN_COLOUR`, the image is unlike the training images.

    """
    spread = np.maximum(np.asarray(stats.spread), MIN_SPREAD)
    return float(np.sqrt((((mean_colour(pixels) - np.asarray(stats.mean)) / spread) ** 2).mean()))
