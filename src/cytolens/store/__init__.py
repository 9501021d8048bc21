"""The annotation store: images, model proposals and experts' labels in a database (SQLite or any SQLAlchemy URL).

Import from its modules (only ``rounds`` loads torch, to read model files):

- :mod:`~cytolens.store.database`: :func:`open_store` (create or open, migrate to the newest schema), :class:`Store`;
- :mod:`~cytolens.store.schema`: the tables; ``migrations/``: their Alembic migrations;
- :mod:`~cytolens.store.images`: :func:`add_images` from a folder under the root (hashed), paths kept inside it;
- :mod:`~cytolens.store.rounds`: :func:`add_model_version`, :func:`record_round` (proposals, uncertainties,
  relevance), :func:`read_proposals`;
- :mod:`~cytolens.store.labels`: :func:`read_labels`, :func:`save_labels` (optimistic locking:
  :class:`StaleWriteError`);
- :mod:`~cytolens.store.queue`: :func:`review_queue`; :mod:`~cytolens.store.dataset`: :func:`read_dataset`,
  :func:`open_source`, :func:`is_store`; :mod:`~cytolens.store.export`: :func:`export_labels`.
"""
