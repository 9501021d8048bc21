"""The images of a store: files under its root folder, named by their path relative to it.

A stored path never leads out of the root: an image outside it (through ``..``, an absolute name or a
symbolic link) is refused, both when images are added and when a stored name is turned back into a file.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from sqlalchemy import select
from sqlalchemy.orm import Session

from cytolens.errors import DataError
from cytolens.io.digest import file_digest
from cytolens.io.images import IMAGE_SUFFIXES, image_size
from cytolens.store.database import Store
from cytolens.store.schema import Image, ImageLabels


def stored_name(store: Store, path: str | Path) -> str:
    """The name a file under the store's root is stored by: its ``/``-separated path relative to the root.

    Args:
        store: The store.
        path: The file, absolute or relative to the working folder.

    Raises:
        DataError: If the file (symbolic links followed) lies outside the root.

    """
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(store.root):
        raise DataError(path, f"outside the store's image folder {store.root}")
    return resolved.relative_to(store.root).as_posix()


def image_file(store: Store, name: str) -> Path:
    """The file of a stored image name, checked to lie under the root (the name may come from a web request).

    Raises:
        DataError: If ``name`` is absolute or leads out of the root (``..``, a symbolic link).

    """
    if PurePosixPath(name).is_absolute() or Path(name).is_absolute():
        raise DataError(name, f"not a path relative to the store's image folder {store.root}")
    path = (store.root / name).resolve()  # the file checked is the file served, even if a link changes later
    stored_name(store, path)
    return path


def find_image(session: Session, name: str) -> Image:
    """The stored image of a name.

    Raises:
        DataError: If no image of that name is in the store.

    """
    image = session.scalar(select(Image).where(Image.path == name))
    if image is None:
        raise DataError(name, "not an image of the annotation store")
    return image


def add_images(store: Store, folder: str | Path | None = None) -> list[str]:
    """Record every image file in ``folder`` and its subfolders (by default the root), in one transaction.

    Each image is recorded with its size and the sha256 of its bytes, and starts unlabelled (labels version
    0). Images already in the store are skipped if unchanged.

    Args:
        store: The store.
        folder: A folder under the store's root.

    Returns:
        The names of the images added, sorted.

    Raises:
        DataError: If ``folder`` is not a folder under the root, an image cannot be read, or an image already in
            the store has changed since (its hash differs: its labels may no longer fit it).

    """
    folder = store.root if folder is None else Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "not a folder")
    stored_name(store, folder)
    files = sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
    added = []
    with store.transaction() as session:
        known = dict(session.execute(select(Image.path, Image.sha256)).tuples().all())
        for path in files:
            name, digest = stored_name(store, path), file_digest(path)
            if name in known:
                if known[name] != digest:
                    raise DataError(path, f"changed since it was added to the store (sha256 {known[name]:.12}...)")
                continue
            width, height = image_size(path)
            image = Image(path=name, width=width, height=height, sha256=digest)
            session.add(image)
            session.flush()
            session.add(ImageLabels(image_id=image.id, version=0))
            known[name] = digest
            added.append(name)
    return added
