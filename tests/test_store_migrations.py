"""The store's Alembic migrations agree with its ORM tables, on SQLite and PostgreSQL (see tests/test_store.py)."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from cytolens.store.database import alembic_config, migrate
from cytolens.store.schema import Base
from test_store import location  # noqa: F401 - the fixture: a SQLite file or a PostgreSQL schema


@pytest.fixture
def engine(location):  # noqa: F811 - the fixture imported above
    engine = create_engine(location if "://" in location else f"sqlite:///{location}")
    yield engine
    engine.dispose()


def test_upgrade_head_equals_the_orm_tables(engine):
    with engine.begin() as connection:
        migrate(connection, "test store")
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        assert context.get_current_heads() == ("0001",)
        assert set(inspect(connection).get_table_names()) == {*Base.metadata.tables, "alembic_version"}


def test_downgrade_to_base_and_up_again(engine):
    with engine.begin() as connection:
        migrate(connection, "test store")
        config = alembic_config(connection)
        command.downgrade(config, "base")
        assert inspect(connection).get_table_names() == ["alembic_version"]
        command.upgrade(config, "head")
        assert MigrationContext.configure(connection).get_current_heads() == ("0001",)
