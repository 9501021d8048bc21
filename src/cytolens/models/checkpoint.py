"""Self-describing checkpoints: weights plus plain (JSON-like) metadata.

A checkpoint file is a ``torch.save`` of ``{"cytolens": FORMAT_VERSION, "meta": {...}, "state_dict": {...}}``.
It is read through :func:`load_plain` (``torch.load(..., weights_only=True)`` after checking the zip
archive's CRCs) so that opening a file from a stranger never runs code and a damaged file is refused, not
used; its metadata holds only str/int/float/bool/None/list/dict and is checked against the schema below when
read. The metadata says everything needed to use the weights:

- ``task``: ``"boxes"`` or ``"points"``, the task of the architecture;
- ``architecture`` and ``kwargs``: the registered builder and its arguments (a mapping);
- ``classes``: distinct class names in output order;
- ``input_size``: the model's internal input size, ``mpp``: µm/px of its training images (positive, or None);
- ``thresholds``: score/NMS or peak-finding thresholds tuned on validation data (in :data:`THRESHOLD_RANGES`);
- ``recipe``: the training configuration; ``data``: training data names, licences and splits;
- ``metrics``: figures measured on held-out data; ``cytolens_version``.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

import cytolens
from cytolens.errors import DataError, ModelError
from cytolens.io.atomic import atomic_write
from cytolens.io.validation import ClassNames, check_number
from cytolens.models.registry import architectures, build_architecture

FORMAT_VERSION = 1
REQUIRED_META = ("task", "architecture", "kwargs", "classes")
OPTIONAL_DICTS = ("thresholds", "data", "metrics", "recipe", "init", "report")
"""Optional metadata entries that, when present, are mappings."""
THRESHOLD_RANGES: dict[str, dict[str, Any]] = {
    "score": {"low": 0.0, "high": 1.0},
    "nms": {"low": 0.0, "high": 1.0},
    "threshold_rel": {"low": 0.0, "high": 1.0},
    "threshold_abs": {"low": 0.0, "high": 1.0},
    "min_distance": {"low": 1, "integer": True},
    "radius": {"low": 0.0, "low_open": True},
}
"""Allowed values of the numbers in ``thresholds`` (``score`` may also map class names to such numbers)."""


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
        meta: Metadata; must pass :func:`check_metadata` (so that no file is written that cannot be read back).
        half: Store floating-point weights as float16 (halves the file; they are cast back on load).

    """
    meta = check_metadata(path, _plain({**meta, "cytolens_version": cytolens.__version__, "stored_half": half}))
    state = {
        key: (value.half() if half and value.is_floating_point() else value).detach().cpu().clone()
        for key, value in model.state_dict().items()
    }
    with atomic_write(path, "wb") as handle:
        torch.save({"cytolens": FORMAT_VERSION, "meta": meta, "state_dict": state}, handle)


def update_metadata(path: str | Path, changes: dict[str, Any]) -> None:
    """Rewrite a checkpoint's metadata with ``changes`` merged in, keeping its weights as stored."""
    meta, state = read_checkpoint(path)
    meta = check_metadata(path, _plain({**meta, **changes}))
    with atomic_write(path, "wb") as handle:
        torch.save({"cytolens": FORMAT_VERSION, "meta": meta, "state_dict": state}, handle)


def _check_archive(path: Path) -> None:
    """Refuse a file that is not a complete zip archive (``torch.save``'s format) or whose data fail their CRCs."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, EOFError) as error:
        raise ModelError(f"{path}: not a loadable checkpoint (truncated, or not a zip archive: {error})") from None
    except OSError as error:
        raise ModelError(f"{path}: cannot be read ({error.strerror or error})") from None
    if damaged is not None:
        raise ModelError(f"{path}: damaged: its entry {damaged} fails its CRC check")


def load_plain(path: str | Path) -> Any:
    """What a ``torch.save`` file holds, read without running code from it, after checking the file is intact.

    Only tensors and plain data (dicts, lists, numbers, strings) are unpickled (``torch.load(...,
    weights_only=True)``), so a file built to run code when unpickled is refused, not run. This is the
    one loader of torch files: cytolens checkpoints and Lightning's training checkpoints (``--resume``).

    Raises:
        ModelError: Naming the file, if it is missing, truncated, damaged (a zip CRC fails), or holds objects
            other than tensors and plain data.

    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint file not found")
    _check_archive(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        found = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        raise ModelError(f"{path}: refused: it holds objects other than tensors and plain data ({found})") from None
    except Exception as error:  # torch raises RuntimeError, EOFError, OSError... on bad files
        raise ModelError(f"{path}: not a loadable checkpoint ({error.__class__.__name__})") from None


def _check_classes(path: Path, classes: Any) -> None:
    """Refuse ``classes`` unless it is a non-empty list of distinct names fit for classes (:class:`ClassNames`)."""
    if not isinstance(classes, list) or not classes:
        raise ModelError(f"{path}: metadata classes must be a non-empty list of names, not {classes!r:.60}")
    names = ClassNames()
    for name in classes:
        names.index(name, path, "metadata classes")
    if len(names.names) < len(classes):
        raise ModelError(f"{path}: metadata classes names a class twice ({classes!r:.60})")


def _check_thresholds(path: Path, thresholds: dict[str, Any]) -> None:
    for key, limits in THRESHOLD_RANGES.items():
        value = thresholds.get(key)
        if value is None:
            continue
        per_class = value.items() if key == "score" and isinstance(value, dict) else [(None, value)]
        for name, number in per_class:
            check_number(number, f"metadata thresholds.{key}" + (f"[{name!r}]" if name else ""), path, **limits)


def check_metadata(path: str | Path, meta: Any) -> dict[str, Any]:
    """``meta`` if it is checkpoint metadata that cytolens can use, else a one-line error naming the file and field.

    The required entries must be present and well typed (``task`` the task of ``architecture``, a
    registered architecture; ``kwargs`` a mapping of argument names; ``classes`` a list of distinct class
    names); ``mpp``, when set, a positive number; the thresholds in :data:`THRESHOLD_RANGES`.

    Raises:
        ModelError: If it is not.

    """
    path = Path(path)
    if not isinstance(meta, dict):
        raise ModelError(f"{path}: checkpoint metadata must be a mapping, not {type(meta).__name__}")
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise ModelError(f"{path}: checkpoint metadata lacks {', '.join(missing)}")
    known = architectures()
    architecture = meta["architecture"]
    if not isinstance(architecture, str) or architecture not in known:
        raise ModelError(f"{path}: metadata architecture {architecture!r:.60} is not one of {', '.join(known)}")
    if meta["task"] != known[architecture].task:
        task = known[architecture].task
        raise ModelError(f"{path}: metadata task {meta['task']!r:.60} is not {task!r}, the task of {architecture}")
    kwargs = meta["kwargs"]
    if not isinstance(kwargs, dict) or not all(isinstance(key, str) for key in kwargs):
        raise ModelError(f"{path}: metadata kwargs must map argument names to values, not {kwargs!r:.60}")
    wrong = [key for key in OPTIONAL_DICTS if meta.get(key) is not None and not isinstance(meta[key], dict)]
    if wrong:
        raise ModelError(f"{path}: metadata {wrong[0]} must be a mapping, not {meta[wrong[0]]!r:.60}")
    try:
        _check_classes(path, meta["classes"])
        if meta.get("mpp") is not None:
            check_number(meta["mpp"], "metadata mpp", path, low=0.0, low_open=True)
        _check_thresholds(path, meta.get("thresholds") or {})
    except DataError as error:
        raise ModelError(str(error)) from None
    return meta


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a checkpoint's metadata and weights without running any code from it, checking both.

    Raises:
        ModelError: If the file is missing, damaged, not a cytolens checkpoint, unsafe to unpickle, or its
            metadata does not pass :func:`check_metadata`.

    """
    path = Path(path)
    payload = load_plain(path)
    if not isinstance(payload, dict) or "meta" not in payload or "state_dict" not in payload:
        raise ModelError(f"{path}: not a cytolens checkpoint (no meta/state_dict)")
    version = payload.get("cytolens", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        problem = f"checkpoint format {version!r:.20} is not one this cytolens reads (it reads up to {FORMAT_VERSION})"
        raise ModelError(f"{path}: {problem}")
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ModelError(f"{path}: checkpoint state_dict must map names to tensors")
    return check_metadata(path, payload["meta"]), state


def build_described(path: str | Path, meta: dict[str, Any], num_classes: int | None = None) -> nn.Module:
    """An untrained model as checked metadata ``meta`` of checkpoint ``path`` describes it (architecture and kwargs).

    Args:
        path: The checkpoint, named in errors.
        meta: Its metadata, as :func:`read_checkpoint` returns it.
        num_classes: Classes of the model (default: those of the metadata).

    Raises:
        ModelError: If the architecture's builder rejects the stored kwargs.

    """
    architecture = meta["architecture"]
    classes = len(meta["classes"]) if num_classes is None else num_classes
    try:
        return build_architecture(architecture, num_classes=classes, **{**meta["kwargs"], "weights": None})
    except (TypeError, ValueError, RuntimeError, ModelError) as error:  # builders reject bad arguments variously
        problem = " ".join(str(error).split()) or error.__class__.__name__
        raise ModelError(f"{path}: metadata kwargs do not build {architecture} ({problem:.200})") from None


def build_from_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint describes and load its weights (in float32), in eval mode."""
    meta, state = read_checkpoint(path)
    model = build_described(path, meta)
    state = {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ModelError(f"{path}: weights do not fit {meta['architecture']} ({str(error).splitlines()[0]})") from None
    return model.eval(), meta
