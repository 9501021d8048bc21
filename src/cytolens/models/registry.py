"""The model registry: architectures by name, and the trained models that ship with cytolens.

Architectures register with :func:`register_architecture` (as torchvision's ``@register_model``); a builder
takes ``num_classes`` and keyword arguments and returns an ``nn.Module`` exposing ``blocks()`` (its blocks
from input to output, covering every parameter once) and ``class_heads()`` (the prefixes of the parameter
names whose shapes depend on the number of classes), and, for Monte-Carlo dropout, ``head_dropouts()`` (the
dropout modules of its heads, their rate a ``head_dropout`` builder argument) and ``TRUNK`` (the deterministic
parts before them). ``tests/test_architecture_contract.py`` checks
every registered architecture against this contract.
Trained models are checkpoint files in ``cytolens/models/bundled/``; :func:`list_models` describes
them from their own metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from cytolens.errors import ModelError

BUNDLED_DIR = Path(__file__).parent / "bundled"


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: its builder and the task it serves (``boxes``, ``points``, ``patches``)."""

    name: str
    task: str
    builder: Callable[..., nn.Module]
    description: str


_ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(name: str, task: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model builder under ``name`` for ``task``."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _ARCHITECTURES:
            raise ValueError(f"architecture {name!r} registered twice")
        doc = (builder.__doc__ or "").strip().splitlines()
        _ARCHITECTURES[name] = Architecture(name, task, builder, doc[0] if doc else "")
        return builder

    return decorate


def _import_builders() -> None:
    """Import the modules whose builders register themselves."""
    from cytolens.models import classifier, detectors, point_fcn  # noqa: F401


def architectures(task: str | None = None) -> dict[str, Architecture]:
    """Registered architectures, optionally only those of one task."""
    _import_builders()
    return {name: arch for name, arch in _ARCHITECTURES.items() if task is None or arch.task == task}


def build_architecture(name: str, num_classes: int, **kwargs: object) -> nn.Module:
    """Build the registered architecture ``name``.

    Raises:
        ModelError: If no such architecture is registered.

    """
    known = architectures()
    if name not in known:
        raise ModelError(f"unknown architecture {name!r}; choose one of: {', '.join(sorted(known))}")
    return known[name].builder(num_classes=num_classes, **kwargs)


def bundled_models() -> dict[str, Path]:
    """Names of the trained models shipped in the package, with their checkpoint files."""
    return {path.stem: path for path in sorted(BUNDLED_DIR.glob("*.pt"))}


def resolve_model(name_or_path: str | Path) -> Path:
    """The checkpoint file for a bundled model name or a path.

    Raises:
        ModelError: If it is neither.

    """
    bundled = bundled_models()
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    path = Path(name_or_path)
    if path.is_file():
        return path
    names = ", ".join(bundled) or "none"
    raise ModelError(f"{name_or_path}: neither a model file nor a bundled model (bundled: {names})")
