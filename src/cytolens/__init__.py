"""cytolens: find, classify and count cells in microscopy images.

For research use only; not for diagnosis.
"""

from pathlib import Path
from typing import TYPE_CHECKING

from cytolens._version import __version__

if TYPE_CHECKING:
    from cytolens.inference.model import CellModel
    from cytolens.inference.pipeline import Pipeline


def load_model(
    name_or_path: str | Path, device: str = "auto", backend: str = "auto", *, classifier: str | Path | None = None
) -> "CellModel | Pipeline":
    """Load a bundled model by name, a checkpoint file or a pipeline file.

    See :func:`cytolens.inference.model.load_model`, which this calls.

    Args:
        name_or_path: Bundled model name (see ``cytolens models``), checkpoint file, or pipeline file.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        backend: ``torch``, ``onnx`` or ``auto``.
        classifier: A patch classifier (bundled name or checkpoint file) that classifies every cell the model
            finds.

    Returns:
        A :class:`~cytolens.inference.model.CellModel`, or a detect -> classify
        :class:`~cytolens.inference.pipeline.Pipeline` for a pipeline file (the bundled ``rbc-morphology`` is one)
        or when ``classifier`` is given.

    """
    from cytolens.inference.model import load_model as _load

    return _load(name_or_path, device=device, backend=backend, classifier=classifier)


__all__ = ["__version__", "load_model"]
