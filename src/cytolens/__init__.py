"""cytolens: find, classify and count cells in microscopy images.

For research use only; not for diagnosis.
"""

from typing import TYPE_CHECKING

from cytolens._version import __version__

if TYPE_CHECKING:
    from cytolens.inference.model import CellModel


def load_model(name_or_path: str, device: str = "auto", backend: str = "auto") -> "CellModel":
    """Load a bundled model by name or a checkpoint file; see :func:`cytolens.inference.model.load_model`."""
    from cytolens.inference.model import load_model as _load

    return _load(name_or_path, device=device, backend=backend)


__all__ = ["__version__", "load_model"]
