"""Alembic environment: migrations for SQLite and PostgreSQL from one set of scripts.

The whole upgrade (or downgrade) runs in ONE transaction that this file opens, on both
databases:

* SQLite: Python's sqlite3 module does not open a transaction before DDL, so without
  this each CREATE/ALTER committed on its own and a migration that failed half-way left
  a half-built schema behind, still stamped with the old revision (the next `exhibit db
  upgrade` then fails on "table already exists"). Here the driver's own transaction
  handling is switched off and the transaction begins with ``BEGIN IMMEDIATE``: SQLite
  DDL is transactional, and two `exhibit db upgrade` started at once run one after the
  other; the second finds the schema at head and does nothing.
* PostgreSQL: DDL is transactional already; a transaction-scoped advisory lock makes
  concurrent upgrades (several containers starting together) take turns instead of
  racing to create the same tables.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import create_engine, event, pool, text
from sqlmodel import SQLModel

import storage.models  # noqa: F401 - registers the tables on SQLModel.metadata

config = context.config
target_metadata = SQLModel.metadata
# Arbitrary constant naming the migration lock on PostgreSQL ("EXMG").
MIGRATION_LOCK_ID = 0x45584D47


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url
    is_sqlite = url.startswith("sqlite")
    engine = create_engine(
        url, poolclass=pool.NullPool, connect_args={"timeout": 120} if is_sqlite else {}
    )
    if is_sqlite:

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # BEGIN is ours (below), DDL included

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    with engine.connect() as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_ID})
        # Alembic sees a connection already in a transaction and runs every migration
        # inside it; it commits when this block ends, or rolls back on any error.
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        context.run_migrations()
    engine.dispose()


run_migrations_online()
