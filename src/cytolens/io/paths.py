"""How annotation files name image files: relative to the annotation file's folder, or absolute."""

from __future__ import annotations

from pathlib import Path


def portable_path(path: Path, folder: Path) -> str:
    """The name to write for ``path`` in an annotation file kept in ``folder``.

    Returns:
        The path relative to ``folder`` (with ``/`` separators) when ``path`` lies inside it, so the
        folder can be moved as a whole; otherwise the absolute path.

    """
    path, folder = Path(path).absolute(), Path(folder).absolute()
    if path.is_relative_to(folder):
        return path.relative_to(folder).as_posix()
    return str(path)


def resolve_path(name: str, *folders: Path) -> Path:
    """The file an annotation names: ``name`` if absolute, else the first existing ``folder / name``.

    Returns:
        The existing file, or ``folders[0] / name`` when none exists (the caller reports it if needed).

    """
    path = Path(name)
    if path.is_absolute():
        return path
    candidates = [folder / path for folder in folders]
    return next((candidate for candidate in candidates if candidate.is_file()), candidates[0])


def output_file(out: Path, suffix: str, default_name: str) -> Path:
    """The file a single-file writer writes: ``out`` if it ends in ``suffix``, else ``out / default_name``."""
    return out if out.suffix.lower() == suffix and not out.is_dir() else out / default_name
