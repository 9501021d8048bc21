"""Stain jitter of training crops (HED space) and stain normalisation towards a reference (Reinhard, Macenko)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2hed

from conftest import dataset_path
from cytolens.data.stain import normalise_stain
from cytolens.io.images import read_image
from cytolens.training.augment import hed_jitter, scale_stains

EOSIN = 1
"""The eosin channel of :func:`skimage.color.rgb2hed`."""


@pytest.fixture(scope="module")
def tissue() -> np.ndarray:
    """A 200-pixel square of a CRCHisto H&E image."""
    return read_image(dataset_path("crchisto") / "train" / "img1" / "img1.png")[:200, :200]


def _eosin(pixels: np.ndarray) -> float:
    return float(rgb2hed(pixels)[..., EOSIN].mean())


def test_unit_scale_gives_the_pixels_back_and_eosin_scales(tissue):
    np.testing.assert_array_equal(scale_stains(tissue, [1, 1, 1], [0, 0, 0]), tissue)
    heavier = scale_stains(tissue, [1, 1.5, 1], [0, 0, 0])
    assert 1.3 < _eosin(heavier) / _eosin(tissue) < 1.7


def test_hed_jitter_keeps_shape_and_dtype_and_changes_colour_within_bounds(tissue):
    assert hed_jitter(tissue, 0.0, np.random.default_rng(0)) is tissue
    for seed in range(5):
        jittered = hed_jitter(tissue, 0.3, np.random.default_rng(seed))
        assert jittered.shape == tissue.shape and jittered.dtype == np.uint8
        change = np.abs(jittered.astype(int) - tissue).mean()
        assert 0 < change < 40
        assert 0.5 < _eosin(jittered) / _eosin(tissue) < 1.5
    again = hed_jitter(tissue, 0.3, np.random.default_rng(4))
    np.testing.assert_array_equal(again, jittered)


@pytest.mark.parametrize("method", ["reinhard", "macenko"])
def test_normalisation_keeps_a_reference_and_moves_eosin_towards_it(tissue, method):
    itself = normalise_stain(tissue, method, tissue)
    assert itself.shape == tissue.shape and itself.dtype == np.uint8
    assert np.abs(itself.astype(int) - tissue).mean() < 5
    heavier = scale_stains(tissue, [1, 1.8, 1], [0, 0, 0])
    normalised = normalise_stain(heavier, method, tissue)
    assert abs(_eosin(normalised) - _eosin(tissue)) < 0.5 * abs(_eosin(heavier) - _eosin(tissue))


def test_unknown_method_is_refused(tissue):
    with pytest.raises(ValueError, match="reinhard, macenko"):
        normalise_stain(tissue, "vahadane", tissue)
