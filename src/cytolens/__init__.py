"""cytolens: find, classify and count cells in microscopy images.

For research use only; not for diagnosis.
"""

__version__ = "0.1.0"


def load_model(name_or_path: str, device: str = "auto"):  # noqa: ANN201 - returns CellModel (imported lazily)
    """Load a bundled model by name or a checkpoint file; see :func:`cytolens.inference.model.load_model`."""
    from cytolens.inference.model import load_model as _load

    return _load(name_or_path, device)


__all__ = ["__version__", "load_model"]
