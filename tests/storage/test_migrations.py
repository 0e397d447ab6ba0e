"""Migrations and models agree, on SQLite and PostgreSQL, and the chain runs both ways."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

import storage.models  # noqa: F401 - registers every table
from storage.migrate import MIGRATIONS, alembic_config, current_heads, upgrade
from tests.fixtures.processes import race


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


def _upgrade_in_a_process(url: str) -> None:
    upgrade(url)


def test_concurrent_upgrades_take_turns(db_url: str) -> None:
    # Several containers starting at once all run `exhibit db upgrade`: three processes
    # released together from a barrier onto an empty database.
    assert race(_upgrade_in_a_process, [(db_url,)] * 3) == [0, 0, 0]
    assert _diff(db_url) == []


def test_a_failing_migration_leaves_nothing_half_done(db_url: str, tmp_path: Path) -> None:
    # A copy of the real migrations with one more that fails after creating a table.
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "9999_fails.py").write_text(
        "from alembic import op\nimport sqlalchemy as sa\n\n"
        f"revision = '9999'\ndown_revision = {current_heads()[0]!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade() -> None:\n"
        "    op.create_table('half_done', sa.Column('id', sa.Integer(), primary_key=True))\n"
        "    raise RuntimeError('migration failed half-way')\n\n\n"
        "def downgrade() -> None:\n    pass\n"
    )
    cfg = alembic_config(db_url)
    cfg.set_main_option("script_location", str(scripts))
    with pytest.raises(RuntimeError, match="half-way"):
        command.upgrade(cfg, "head")
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        # Nothing of the failed upgrade stays: no table of any migration, no stamp.
        assert set(inspect(engine).get_table_names()) == set()
    finally:
        engine.dispose()
    upgrade(db_url)
    assert _diff(db_url) == []
