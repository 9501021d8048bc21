"""Opening an annotation store: a SQLite file by default, or any database SQLAlchemy reaches by URL.

:func:`open_store` connects, checks that the database is a store this cytolens can use and upgrades its
schema to the newest migration (Alembic, run programmatically: the migrations ship inside the package,
no ``alembic.ini``). A SQLite store is one file in WAL mode (readers do not block the writer; a commit
survives a crash of the writing process), with foreign keys enforced and a 30 s wait on a locked file;
PostgreSQL needs a driver (``pip install "psycopg[binary]"``) and a URL such as
``postgresql+psycopg://user:password@localhost/cytolens``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine, create_engine, event, inspect, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session

from cytolens.errors import DataError

MIGRATIONS = "cytolens.store:migrations"
"""Where the Alembic scripts are, as a package resource."""
SQLITE_TIMEOUT = 30.0
"""Seconds a SQLite connection waits for another process's write lock before giving up."""


@dataclass(frozen=True)
class Store:
    """An open annotation store.

    Attributes:
        engine: The SQLAlchemy engine.
        root: The folder the stored image paths are relative to.
        name: The store as named in messages (a file, or a URL without its password).

    """

    engine: Engine
    root: Path
    name: str

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back if it raises."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def close(self) -> None:
        """Close the store's connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sqlite_pragmas(connection: sqlite3.Connection, _record: Any) -> None:
    """Every new SQLite connection: WAL journal, foreign keys enforced."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _engine(location: str | Path) -> tuple[Engine, str]:
    """The engine for a file path or a URL, and the name to show for it.

    Raises:
        DataError: If ``location`` is a folder, a file in a missing folder, not a URL, or a URL whose driver is not
            installed.

    """
    text = str(location)
    if "://" not in text:
        path = Path(location).absolute()
        if path.is_dir():
            raise DataError(path, "is a folder, not an annotation store file")
        if not path.parent.is_dir():
            raise DataError(path, "its folder does not exist")
        engine = create_engine(URL.create("sqlite", database=str(path)), connect_args={"timeout": SQLITE_TIMEOUT})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine, str(location)
    try:
        url = make_url(text)
    except ArgumentError:
        raise DataError(text, "neither a store file nor a database URL") from None
    name = url.render_as_string(hide_password=True)
    try:
        engine = create_engine(url)
    except NoSuchModuleError:
        raise DataError(name, f"no SQLAlchemy driver for {url.drivername!r} is installed") from None
    except ImportError as error:
        raise DataError(name, f"its database driver is not installed ({error.name})") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine, name


def alembic_config(connection: Connection | None = None) -> Config:
    """The Alembic configuration of the store's migrations, running on ``connection`` when given."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    return config


def migrate(connection: Connection, name: str) -> None:
    """Upgrade the store on ``connection`` to the newest schema (creating it in an empty database).

    Raises:
        DataError: Naming ``name``, if the database holds tables but is not a store, or a schema newer than this
            cytolens knows.

    """
    config = alembic_config(connection)
    script = ScriptDirectory.from_config(config)
    current = MigrationContext.configure(connection).get_current_heads()
    known = {revision.revision for revision in script.walk_revisions()}
    unknown = [revision for revision in current if revision not in known]
    if unknown:
        raise DataError(
            name,
            f"its schema (revision {', '.join(unknown)}) is newer than this cytolens knows "
            f"(up to {script.get_current_head()}); use a newer cytolens",
        )
    if not current and inspect(connection).get_table_names():
        raise DataError(name, "not an annotation store: it holds tables but no store schema version")
    command.upgrade(config, "head")


def open_store(location: str | Path, root: str | Path) -> Store:
    """Open (or create) an annotation store and bring its schema up to date.

    Args:
        location: A file (a SQLite store, created if absent) or a SQLAlchemy database URL.
        root: The folder its image paths are relative to (see :mod:`cytolens.store.images`).

    Returns:
        The open store; close it (or use it as a context manager) when done.

    Raises:
        DataError: Naming the store, if it cannot be opened or created, is not a database, is a database but not
            a store, or has a schema newer than this cytolens; naming ``root`` if it is not a folder.

    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "the images' root folder does not exist")
    engine, name = _engine(location)
    try:
        with engine.begin() as connection:
            migrate(connection, name)
    except DBAPIError as error:
        engine.dispose()
        problem = str(error.orig).strip().splitlines()[0] if error.orig is not None else str(error)
        raise DataError(name, f"cannot be used as an annotation store ({problem})") from None
    except DataError:
        engine.dispose()
        raise
    return Store(engine, root.resolve(), name)
