"""Migrations and models agree, on SQLite and PostgreSQL, and the chain runs both ways."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

import storage.models  # noqa: F401 - registers every table
from storage.migrate import alembic_config, current_heads, upgrade


def _diff(url: str) -> list[object]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, SQLModel.metadata))
    finally:
        engine.dispose()


def test_one_head() -> None:
    assert len(current_heads()) == 1


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    upgrade(db_url)
    assert _diff(db_url) == []


def test_downgrade_to_nothing_and_back(db_url: str) -> None:
    upgrade(db_url)
    command.downgrade(alembic_config(db_url), "base")
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    upgrade(db_url)
    assert _diff(db_url) == []
