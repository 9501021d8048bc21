"""Augmentation pipelines (albumentations) that move boxes and points with the pixels.

Stained smears vary in brightness, contrast and stain hue between labs and scanners; cells have no
preferred orientation, so every flip and 90° rotation is a valid view (albumentations' ``D4``).

albumentations draws from a generator of its own, which a run's seed does not reach: the datasets seed
each training sample's pipeline from torch (:func:`seed_from_torch`), so that a seeded run repeats its
augmentations.
"""

from __future__ import annotations

import albumentations as A
import numpy as np
import torch
from skimage.color import hed_from_rgb, rgb_from_hed

from cytolens.training.stages import short_side

DENSITY_FLOOR = 1e-6
"""Smallest intensity (0-1) before the logarithm of optical density, as in :func:`skimage.color.rgb2hed`."""
STAIN_SHIFT = 0.01
"""Scale of the stain shifts: scikit-image's densities of H&E tissue run about 0-0.1 (eosin's mean about 0.015)."""


def _colour(strength: float) -> list[A.BasicTransform]:
    return [
        A.RandomBrightnessContrast(brightness_limit=0.2 * strength, contrast_limit=0.2 * strength, p=0.8),
        A.HueSaturationValue(
            hue_shift_limit=int(8 * strength), sat_shift_limit=int(20 * strength), val_shift_limit=0, p=0.5
        ),
        A.RGBShift(
            r_shift_limit=int(12 * strength), g_shift_limit=int(12 * strength), b_shift_limit=int(12 * strength), p=0.5
        ),
    ]


def scale_stains(pixels: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """An RGB image with each stain's density in haematoxylin-eosin-DAB space scaled by ``scale`` and shifted by
    ``shift`` (three values each; scikit-image's densities and stain matrices, :func:`skimage.color.rgb2hed`,
    without its clipping of negative amounts, so that scale 1 and shift 0 give the pixels back).

    Args:
        pixels: ``(H, W, 3)`` RGB uint8.
        scale: Factors of the haematoxylin, eosin and DAB densities.
        shift: Added to them.

    Returns:
        The ``(H, W, 3)`` RGB uint8 image.

    """
    density = np.log(np.maximum(pixels / 255.0, DENSITY_FLOOR)) / np.log(DENSITY_FLOOR)
    density = density @ (hed_from_rgb * np.asarray(scale)) @ rgb_from_hed + np.asarray(shift) @ rgb_from_hed
    return np.round(np.clip(np.exp(density * np.log(DENSITY_FLOOR)), 0, 1) * 255).astype(np.uint8)


def hed_jitter(pixels: np.ndarray, strength: float, generator: np.random.Generator) -> np.ndarray:
    """Stain jitter (Tellez et al. 2018): :func:`scale_stains` by ``1 + U(-strength, strength)`` and shifted by
    ``STAIN_SHIFT * U(-strength, strength)``, drawn per stain.

    Args:
        pixels: ``(H, W, 3)`` RGB uint8.
        strength: Half-width of the uniform draws (0: the pixels unchanged).
        generator: Source of the draws.

    Returns:
        The jittered ``(H, W, 3)`` RGB uint8 image.

    """
    if strength <= 0:
        return pixels
    scale = 1 + generator.uniform(-strength, strength, 3)
    return scale_stains(pixels, scale, generator.uniform(-strength, strength, 3) * STAIN_SHIFT)


def seed_from_torch() -> int:
    """A seed for an augmentation pipeline, drawn from torch's generator (seeded by the run; apart per worker)."""
    return int(torch.randint(0, 2**31 - 1, ()).item())


def box_pipeline(
    max_size: int, train: bool, crop_p: float = 0.5, colour: float = 1.0, seed: int | None = None
) -> A.Compose:
    """Resize so the longer side is ``max_size``; in training add crops, colour jitter and D4 views.

    Training crops are ``max_size`` wide and :func:`~cytolens.training.stages.short_side` of it high.

    Boxes are ``pascal_voc`` (absolute xyxy) with a ``labels`` field; a cropped box is kept when at least
    45% of its area stays visible. ``seed`` seeds the random choices (``None``: albumentations' own).
    """
    steps: list[A.BasicTransform] = [A.LongestMaxSize(max_size=max_size)]
    if train:
        steps += [
            A.RandomResizedCrop(size=(short_side(max_size), max_size), scale=(0.5, 1.0), ratio=(1.2, 1.45), p=crop_p),
            *_colour(colour),
            A.D4(p=1.0),
        ]
    return A.Compose(
        steps,
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=0.45, clip=True),
        seed=seed,
    )


def point_pipeline(train: bool, colour: float = 1.0) -> A.Compose:
    """Colour jitter and D4 views for point-annotated crops (keypoints ``xy`` with a ``labels`` field)."""
    steps: list[A.BasicTransform] = [*_colour(colour), A.D4(p=1.0)] if train else []
    return A.Compose(
        steps, keypoint_params=A.KeypointParams(format="xy", label_fields=["labels"], remove_invisible=True)
    )
