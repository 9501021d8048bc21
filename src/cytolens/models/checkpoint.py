"""Self-describing checkpoints: weights plus plain (JSON-like) metadata.

A checkpoint file is a ``torch.save`` of ``{"cytolens": FORMAT_VERSION, "meta": {...}, "state_dict": {...}}``.
It is read with ``torch.load(..., weights_only=True)`` so that opening a file from a stranger never runs
code, and its metadata holds only str/int/float/bool/None/list/dict. The metadata says everything needed
to use the weights:

- ``task``: ``"boxes"``, ``"points"`` or ``"patches"``;
- ``architecture`` and ``kwargs``: the registered builder and its arguments;
- ``classes``: class names in output order;
- ``input_size``: the model's internal input size, ``mpp``: µm/px of its training images (or None);
- ``thresholds``: score/NMS or peak-finding thresholds tuned on validation data;
- ``recipe``: the training configuration; ``data``: training data names, licences and splits;
- ``metrics``: figures measured on held-out data; ``cytolens_version``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

import cytolens
from cytolens.errors import ModelError
from cytolens.io.atomic import atomic_write
from cytolens.models.registry import build_architecture

FORMAT_VERSION = 1
REQUIRED_META = ("task", "architecture", "kwargs", "classes")


def _plain(value: Any, where: str = "meta") -> Any:
    """``value`` as plain JSON types (NumPy scalars become floats...), so that metadata never needs code to load.

    Raises:
        ModelError: If ``value`` holds something JSON cannot represent.

    """
    try:
        return json.loads(json.dumps(value, allow_nan=True))
    except TypeError as error:
        raise ModelError(f"checkpoint metadata {where} is not plain JSON-like data: {error}") from None


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any], half: bool = False) -> None:
    """Write weights and metadata atomically.

    Args:
        path: Output ``.pt`` file.
        model: The model (its ``state_dict`` is saved).
        meta: Metadata; must contain :data:`REQUIRED_META`.
        half: Store floating-point weights as float16 (halves the file; they are cast back on load).

    """
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise ModelError(f"{path}: checkpoint metadata lacks {', '.join(missing)}")
    meta = _plain({**meta, "cytolens_version": cytolens.__version__, "stored_half": half})
    state = {
        key: (value.half() if half and value.is_floating_point() else value).detach().cpu().clone()
        for key, value in model.state_dict().items()
    }
    with atomic_write(path, "wb") as handle:
        torch.save({"cytolens": FORMAT_VERSION, "meta": meta, "state_dict": state}, handle)


def update_metadata(path: str | Path, changes: dict[str, Any]) -> None:
    """Rewrite a checkpoint's metadata with ``changes`` merged in, keeping its weights as stored."""
    meta, state = read_checkpoint(path)
    meta = _plain({**meta, **changes})
    with atomic_write(path, "wb") as handle:
        torch.save({"cytolens": FORMAT_VERSION, "meta": meta, "state_dict": state}, handle)


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a checkpoint's metadata and weights without running any code from it.

    Raises:
        ModelError: If the file is missing, is not a cytolens checkpoint, or is unsafe to unpickle.

    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError... on bad files
        raise ModelError(f"{path}: not a loadable checkpoint ({error.__class__.__name__})") from None
    if not isinstance(payload, dict) or "meta" not in payload or "state_dict" not in payload:
        raise ModelError(f"{path}: not a cytolens checkpoint (no meta/state_dict)")
    if payload.get("cytolens", 0) > FORMAT_VERSION:
        raise ModelError(f"{path}: checkpoint format {payload['cytolens']} is newer than this cytolens supports")
    return payload["meta"], payload["state_dict"]


def build_from_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint describes and load its weights (in float32), in eval mode."""
    meta, state = read_checkpoint(path)
    kwargs = {**meta["kwargs"], "weights": None}
    model = build_architecture(meta["architecture"], num_classes=len(meta["classes"]), **kwargs)
    state = {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ModelError(f"{path}: weights do not fit {meta['architecture']} ({str(error).splitlines()[0]})") from None
    return model.eval(), meta
