"""Stain normalisation of H&E images towards a reference image: Reinhard's and Macenko's methods.

- ``reinhard`` (Reinhard et al. 2001): each channel of the CIE L*a*b* image (:func:`skimage.color.rgb2lab`)
  is shifted and scaled to the reference's mean and standard deviation.
- ``macenko`` (Macenko et al. 2009): the two stain vectors of each image are estimated in optical density
  from the plane of its two main directions (tissue pixels only: density above :data:`TISSUE_DENSITY`,
  robust extremes of the angle at :data:`ANGLE_PERCENTILE`), each pixel's haematoxylin and eosin amounts are
  solved for, scaled so that their 99th percentiles match the reference's, and recombined with the
  reference's stain vectors.

Both keep the image's shape and return RGB uint8; an image without tissue (Macenko) is returned unchanged.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from skimage.color import lab2rgb, rgb2lab

StainMethod = Literal["reinhard", "macenko"]
STAIN_METHODS: tuple[str, ...] = ("reinhard", "macenko")
"""The methods :func:`normalise_stain` knows."""
LIGHT = 255.0
"""Intensity of unstained light (the background of a brightfield image)."""
TISSUE_DENSITY = 0.15
"""Pixels whose optical density is at most this in some channel count as background (Macenko's β)."""
ANGLE_PERCENTILE = 1.0
"""Robust extremes of the stain angles, in percent (Macenko's α)."""
AMOUNT_PERCENTILE = 99.0
"""Percentile of the stain amounts matched to the reference's."""


def _density(pixels: np.ndarray) -> np.ndarray:
    """``(N, 3)`` optical densities of RGB uint8 pixels."""
    return -np.log((pixels.reshape(-1, 3).astype(np.float64) + 1) / LIGHT)


def _stain_vectors(density: np.ndarray) -> np.ndarray | None:
    """The ``(3, 2)`` unit stain vectors (haematoxylin first) of optical densities, or ``None`` without tissue."""
    tissue = density[(density > TISSUE_DENSITY).all(axis=1)]
    if len(tissue) < 2:
        return None
    _, vectors = np.linalg.eigh(np.cov(tissue.T))
    plane = vectors[:, 1:3]  # the two largest eigenvalues
    angles = np.arctan2(tissue @ plane[:, 1], tissue @ plane[:, 0])
    low, high = np.percentile(angles, [ANGLE_PERCENTILE, 100 - ANGLE_PERCENTILE])
    first = plane @ [np.cos(low), np.sin(low)]
    second = plane @ [np.cos(high), np.sin(high)]
    stains = np.stack([first, second], axis=1) if first[0] > second[0] else np.stack([second, first], axis=1)
    return stains * np.sign(stains.sum(axis=0))  # densities are positive


def _amounts(density: np.ndarray, stains: np.ndarray) -> np.ndarray:
    """``(N, 2)`` stain amounts whose combination with ``stains`` best gives ``density`` (least squares)."""
    return np.linalg.lstsq(stains, density.T, rcond=None)[0].T


def _macenko(pixels: np.ndarray, reference: np.ndarray) -> np.ndarray:
    density, reference_density = _density(pixels), _density(reference)
    stains, reference_stains = _stain_vectors(density), _stain_vectors(reference_density)
    if stains is None or reference_stains is None:
        return pixels
    amounts = _amounts(density, stains)
    reference_amounts = _amounts(reference_density, reference_stains)
    scale = np.percentile(reference_amounts, AMOUNT_PERCENTILE, axis=0) / np.maximum(
        np.percentile(amounts, AMOUNT_PERCENTILE, axis=0), 1e-6
    )
    restored = LIGHT * np.exp(-(amounts * scale) @ reference_stains.T) - 1
    return np.clip(np.round(restored), 0, 255).astype(np.uint8).reshape(pixels.shape)


def _reinhard(pixels: np.ndarray, reference: np.ndarray) -> np.ndarray:
    lab, reference_lab = rgb2lab(pixels), rgb2lab(reference)
    mean, std = lab.mean(axis=(0, 1)), lab.std(axis=(0, 1))
    reference_mean, reference_std = reference_lab.mean(axis=(0, 1)), reference_lab.std(axis=(0, 1))
    matched = (lab - mean) / np.maximum(std, 1e-6) * reference_std + reference_mean
    return np.round(np.clip(lab2rgb(matched), 0, 1) * 255).astype(np.uint8)


def normalise_stain(pixels: np.ndarray, method: StainMethod, reference: np.ndarray) -> np.ndarray:
    """An H&E image's stain normalised towards a reference image's.

    Args:
        pixels: ``(H, W, 3)`` RGB uint8 image.
        method: ``reinhard`` or ``macenko`` (see the module docstring).
        reference: ``(h, w, 3)`` RGB uint8 image whose stain the result takes.

    Returns:
        The normalised ``(H, W, 3)`` RGB uint8 image.

    Raises:
        ValueError: If ``method`` is not one of :data:`STAIN_METHODS`.

    """
    if method == "reinhard":
        return _reinhard(pixels, reference)
    if method == "macenko":
        return _macenko(pixels, reference)
    raise ValueError(f"stain normalisation method must be one of {', '.join(STAIN_METHODS)}, not {method!r}")
