"""Image files of annotation datasets: how annotation files name them, and how writers place them in ``out``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cytolens.errors import DataError
from cytolens.io.atomic import atomic_write


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


def link_or_copy(source: Path, target: Path) -> None:
    """Place the image ``source`` at ``target``: a hard link when the file system allows one, else a copy.

    A hard link takes no space and, unlike a symbolic link, stays valid when ``source`` is moved or
    deleted; it is the same file, so editing one in place edits the other. A copy keeps the
    timestamps and permissions (as :func:`shutil.copy2`). Either way ``target`` is made under a
    temporary name and moved into place, replacing any file there, so it is never seen half written.

    Raises:
        DataError: If ``source`` is not a file, or ``target`` can be neither linked nor written.

    """
    if not source.is_file():
        raise DataError(source, "image file not found")
    if target.exists() and os.path.samefile(source, target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.link")
    try:
        temporary.unlink(missing_ok=True)
        os.link(source, temporary)
        os.replace(temporary, target)
        return
    except OSError:
        temporary.unlink(missing_ok=True)  # other file system, or one without hard links: copy
    try:
        with atomic_write(target, "wb") as handle, source.open("rb") as original:
            shutil.copyfileobj(original, handle)
        shutil.copystat(source, target)
    except OSError as error:
        raise DataError(target, f"cannot copy the image {source} here ({error.strerror or error})") from None
