"""Deep features of patches, computed once and kept on disk: what the fast mode trains its heads on.

:func:`patch_features` gives the pooled features (:meth:`PatchClassifier.features
<cytolens.models.classifier.PatchClassifier.features>`) of every patch under every view, as a ``(P, V, F)``
float32 array. Each feature vector is a function of

- the network body: its architecture and weights (:func:`body_key`, a hash of the body's state dict, so a
  fine-tuned body never reads the features of the ImageNet one),
- the image's content (the sha256 of its file: a renamed or copied file hits, an edited one misses),
- the window (centre and side in the image's pixels), the view (angle, shift, flip) and the input size,

and is stored under exactly that key: one ``.npz`` file per body, image content and input size in the
:class:`FeatureCache` folder (default ``$CYTOLENS_CACHE_DIR/features``, else ``~/.cache/cytolens/features``),
holding the window-and-view rows it has and their features. Files are written atomically and read with
``allow_pickle=False``; a file that cannot be read or does not hold what it should is recomputed and
rewritten, never trusted.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from cytolens.data.patches import Patch, View, crop_patch
from cytolens.inference.onnx_boxes import cache_dir
from cytolens.io.atomic import atomic_write
from cytolens.io.digest import file_digest
from cytolens.io.images import read_image
from cytolens.models.classifier import PatchClassifier
from cytolens.progress import progress

log = logging.getLogger(__name__)

Row = tuple[float, ...]
"""A window seen through a view, as stored: centre x, centre y, side, angle, shift x, shift y, flip."""


def body_key(model: PatchClassifier) -> str:
    """Hex sha256 of what a patch's features depend on in ``model``: the body's architecture, its input
    normalisation and every tensor of its state dict (weights and batch-norm statistics).
    """
    config = getattr(model.body, "pretrained_cfg", None) or {}
    digest = hashlib.sha256()
    described = {
        "body": type(model.body).__name__,
        "architecture": config.get("architecture"),
        "mean": model.mean.flatten().tolist(),
        "std": model.std.flatten().tolist(),
    }
    digest.update(json.dumps(described, sort_keys=True).encode())
    for name, tensor in model.body.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def view_row(centre: tuple[float, float], side: float, view: View) -> Row:
    """The stored key of a window (centre, side) seen through ``view``, rounded to 1/1000 of a pixel or degree."""
    values = (*centre, side, view.angle, *view.shift, float(view.flip))
    return tuple(round(float(value), 3) for value in values)


class FeatureCache:
    """A folder of cached patch features: ``<folder>/<body key>/<input size>/<image sha256>.npz``.

    Args:
        folder: Where the files go (``None``: ``features`` under :func:`cytolens.inference.onnx_boxes.cache_dir`,
            i.e. ``$CYTOLENS_CACHE_DIR``, else ``$XDG_CACHE_HOME/cytolens``, else ``~/.cache/cytolens``).

    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else cache_dir() / "features"

    def path(self, body: str, image: str, size: int) -> Path:
        """The file of one body, image content and input size."""
        return self.folder / body[:24] / str(size) / f"{image}.npz"

    def read(self, path: Path, width: int) -> dict[Row, np.ndarray]:
        """The rows stored in ``path`` and their features of ``width`` values; empty when absent, and (with a
        warning) when the file is unreadable or holds anything but finite float32 features of that width.
        """
        if not path.is_file():
            return {}
        try:
            with np.load(path, allow_pickle=False) as stored:
                rows, features = stored["rows"], stored["features"]
            valid = (
                rows.ndim == 2
                and rows.shape[1] == 7
                and features.dtype == np.float32
                and features.shape == (len(rows), width)
                and np.isfinite(features).all()
            )
            if not valid:
                raise ValueError("unexpected content")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            log.warning("%s: cached features unreadable (%s); computing them again", path, error)
            return {}
        return {tuple(row.tolist()): feature for row, feature in zip(rows, features, strict=True)}

    def write(self, path: Path, table: dict[Row, np.ndarray]) -> None:
        """Store ``table`` (rows and their features) in ``path``, atomically."""
        rows = np.array(list(table), dtype=np.float64).reshape(-1, 7)
        features = np.stack(list(table.values())).astype(np.float32)
        with atomic_write(path, "wb") as handle:
            np.savez(handle, rows=rows, features=features)


def _missing_crops(
    images: dict[str, Path], wanted: dict[str, set[Row]], size: int
) -> Iterator[tuple[str, Row, np.ndarray]]:
    """Each missing (image, row) and its ``(size, size, 3)`` patch; every image decoded once."""
    for image, rows in wanted.items():
        if not rows:
            continue
        pixels = read_image(images[image])
        for row in sorted(rows):
            centre, side, angle, shift, flip = row[:2], row[2], row[3], row[4:6], bool(row[6])
            yield image, row, crop_patch(pixels, centre, side, size, View(angle, shift, flip))


def _batch_features(model: PatchClassifier, crops: Sequence[np.ndarray]) -> np.ndarray:
    """Pooled features of a list of uint8 patches (channels-last tensors: faster on CPU)."""
    device = next(model.parameters()).device
    batch = torch.from_numpy(np.stack(crops)).to(device).permute(0, 3, 1, 2).float().div_(255)
    with torch.inference_mode():
        return model.features(batch.contiguous(memory_format=torch.channels_last)).float().cpu().numpy()


def patch_features(
    model: PatchClassifier,
    paths: Sequence[str | Path],
    patches: Sequence[Patch],
    views: Sequence[View],
    size: int,
    cache: FeatureCache | None = None,
    batch_size: int = 32,
    show_progress: bool = False,
) -> np.ndarray:
    """Pooled deep features of every patch under every view.

    Args:
        model: The classifier whose body computes the features (run in eval mode; its mode is restored).
        paths: Image files; ``patch.image`` indexes this list.
        patches: The windows (centre and side in their image's pixels).
        views: The views of each patch (see :func:`~cytolens.data.patches.test_time_views`).
        size: Side of the network input each window is resampled to.
        cache: Where features are kept between calls (``None``: computed every time, nothing written).
        batch_size: Patches per forward pass.
        show_progress: Show a progress bar while computing.

    Returns:
        ``(len(patches), len(views), model.feature_dim)`` float32 features.

    Raises:
        DataError: If an image that has features to compute cannot be read.

    """
    keys = {index: file_digest(paths[index]) for index in sorted({patch.image for patch in patches})}
    images = {key: Path(paths[index]) for index, key in keys.items()}
    body = body_key(model) if cache is not None else ""
    tables = {key: cache.read(cache.path(body, key, size), model.feature_dim) if cache else {} for key in images}
    wanted: dict[str, set[Row]] = {key: set() for key in images}
    for patch in patches:
        for view in views:
            row = view_row(patch.centre, patch.side, view)
            if row not in tables[keys[patch.image]]:
                wanted[keys[patch.image]].add(row)
    remaining = {key: len(rows) for key, rows in wanted.items()}
    missing = sum(remaining.values())
    if missing:
        log.info("computing features of %d patch views (%d cached)", missing, len(patches) * len(views) - missing)
    training = model.training
    model.eval()
    try:
        crops = _missing_crops(images, wanted, size)
        batches = iter(lambda: list(itertools.islice(crops, batch_size)), [])
        for batch in progress(batches, -(-missing // batch_size), "Patch features", show_progress):
            features = _batch_features(model, [crop for *_, crop in batch])
            for (image, row, _), feature in zip(batch, features, strict=True):
                tables[image][row] = feature
                remaining[image] -= 1
                if cache is not None and remaining[image] == 0:
                    cache.write(cache.path(body, image, size), tables[image])
    finally:
        model.train(training)
    out = np.empty((len(patches), len(views), model.feature_dim), dtype=np.float32)
    for p, patch in enumerate(patches):
        table = tables[keys[patch.image]]
        for v, view in enumerate(views):
            out[p, v] = table[view_row(patch.centre, patch.side, view)]
    return out
