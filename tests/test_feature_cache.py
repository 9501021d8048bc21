"""Cached patch features: hits, misses and invalidation, damaged entries, and test-time aggregation."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cytolens.data.patches import Patch, View, crop_patch
from cytolens.data.patches import test_time_views as fixed_views
from cytolens.errors import DataError
from cytolens.io.digest import file_digest
from cytolens.io.images import read_image
from cytolens.models.classifier import lite_classifier
from cytolens.training import feature_cache
from cytolens.training.fast_heads import head_probabilities
from cytolens.training.feature_cache import FeatureCache, body_key, patch_features

SIZE = 64


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return lite_classifier(3, weights=None).eval()


@pytest.fixture
def crops(erythrocytesidb, tmp_path):
    """Three real erythrocytesIDB crops copied where a test may edit or rename them."""
    paths = []
    for name in ("circular", "elongated", "other"):
        source = sorted((erythrocytesidb / name).iterdir())[0]
        paths.append(tmp_path / f"{name}{source.suffix}")
        shutil.copyfile(source, paths[-1])
    return paths


@pytest.fixture
def computed(monkeypatch):
    """Counts the patch views that go through the network."""
    count = [0]
    compute = feature_cache._batch_features

    def counting(model, crops):
        count[0] += len(crops)
        return compute(model, crops)

    monkeypatch.setattr(feature_cache, "_batch_features", counting)
    return count


def whole(paths):
    """One patch per crop: the whole image, as data.patches makes of a crop folder."""
    patches = []
    for index, path in enumerate(paths):
        width, height = Image.open(path).size
        patches.append(Patch(index, (width / 2, height / 2), float(max(width, height)), (index,), 0))
    return patches


def test_miss_then_hit_and_renamed_file_hits(model, crops, computed, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    patches, views = whole(crops), fixed_views(2)
    first = patch_features(model, crops, patches, views, SIZE, cache)
    assert first.shape == (3, 2, model.feature_dim) and first.dtype == np.float32
    assert computed[0] == 6
    assert len(list(cache.folder.rglob("*.npz"))) == 3  # one file per image content
    again = patch_features(model, crops, patches, views, SIZE, cache)
    assert computed[0] == 6
    np.testing.assert_array_equal(again, first)
    renamed = crops[0].with_name("renamed.png")
    shutil.copyfile(crops[0], renamed)
    moved = patch_features(model, [renamed], patches[:1], views, SIZE, cache)
    assert computed[0] == 6
    np.testing.assert_array_equal(moved, first[:1])
    uncached = patch_features(model, crops, patches, views, SIZE)
    assert computed[0] == 12
    np.testing.assert_allclose(uncached, first, atol=1e-5)


def test_edited_image_misses(model, crops, computed, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    patches, views = whole(crops), fixed_views(1)
    before = patch_features(model, crops, patches, views, SIZE, cache)
    pixels = np.array(Image.open(crops[1]).convert("RGB"))
    pixels[:20, :20] = 255 - pixels[:20, :20]
    Image.fromarray(pixels).save(crops[1])
    after = patch_features(model, crops, patches, views, SIZE, cache)
    assert computed[0] == 3 + 1  # only the edited image again
    np.testing.assert_array_equal(after[[0, 2]], before[[0, 2]])
    assert not np.allclose(after[1], before[1])


def test_other_weights_view_window_or_size_miss(model, crops, computed, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    patches, views = whole(crops), fixed_views(1)
    patch_features(model, crops, patches, views, SIZE, cache)
    assert computed[0] == 3
    other = lite_classifier(3, weights=None).eval()
    other.load_state_dict(model.state_dict())
    assert body_key(other) == body_key(model)
    patch_features(other, crops, patches, views, SIZE, cache)
    assert computed[0] == 3  # same body weights, another model object: hit
    with torch.no_grad():
        other.body.conv_stem.weight[0, 0, 0, 0] += 0.1
    assert body_key(other) != body_key(model)
    patch_features(other, crops, patches, views, SIZE, cache)
    assert computed[0] == 6
    with torch.no_grad():
        other.out[-1].weight.zero_()  # the head is no part of the features
    patch_features(other, crops, patches, views, SIZE, cache)
    assert computed[0] == 6
    rotated = [View(90.0), View(0.0, (2.0, 0.0))]
    patch_features(model, crops, patches, [*views, *rotated], SIZE, cache)
    assert computed[0] == 6 + 6  # the identity view was cached, the two new views not
    moved = [Patch(p.image, (p.centre[0] + 1, p.centre[1]), p.side, p.labels, 0) for p in patches]
    patch_features(model, crops, moved, views, SIZE, cache)
    assert computed[0] == 12 + 3
    patch_features(model, crops, patches, views, SIZE + 32, cache)
    assert computed[0] == 15 + 3


@pytest.mark.parametrize("damage", [b"", b"not an npz file", "truncated", "wrong width"])
def test_damaged_entry_is_recomputed(model, crops, computed, tmp_path, caplog, damage):
    cache = FeatureCache(tmp_path / "cache")
    patches, views = whole(crops), fixed_views(1)
    expected = patch_features(model, crops, patches, views, SIZE, cache)
    entry = cache.path(body_key(model), file_digest(crops[0]), SIZE)
    assert entry.is_file()
    if damage == "truncated":
        entry.write_bytes(entry.read_bytes()[:100])
    elif damage == "wrong width":
        np.savez(entry, rows=np.zeros((1, 7)), features=np.zeros((1, 3), np.float32))
    else:
        entry.write_bytes(damage)
    with caplog.at_level(logging.WARNING):
        again = patch_features(model, crops, patches, views, SIZE, cache)
    assert computed[0] == 3 + 1
    np.testing.assert_allclose(again, expected, atol=1e-5)
    assert "cached features unreadable" in caplog.text and str(entry) in caplog.text
    assert len(cache.read(entry, model.feature_dim)) == 1  # rewritten whole


def test_aggregation_is_the_mean_of_the_views(model, crops, tmp_path):
    patches, views = whole(crops), fixed_views(8)
    probabilities = head_probabilities(model, patch_features(model, crops, patches, views, SIZE))
    expected = []
    for patch, path in zip(patches, crops, strict=True):
        pixels = read_image(path)
        batch = np.stack([crop_patch(pixels, patch.centre, patch.side, SIZE, view) for view in views])
        with torch.inference_mode():
            logits = model(torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255)
        expected.append(model.probabilities(logits).mean(dim=0).numpy())
    np.testing.assert_allclose(probabilities, np.stack(expected), atol=1e-5)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_unreadable_image_names_the_file(model, crops, tmp_path):
    crops[2].write_bytes(b"not an image")
    with pytest.raises(DataError, match=crops[2].name):
        patch_features(model, crops, whole(crops[:2]) + [Patch(2, (40, 40), 80.0, (2,), 0)], [View()], SIZE)
