"""Alembic's environment for the store: run on the connection that :func:`cytolens.store.database.migrate` passes.

No ``alembic.ini`` and no logging set-up: the caller configures Alembic and hands over its connection in
``config.attributes["connection"]``.
"""

from alembic import context

from cytolens.store.schema import Base

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
