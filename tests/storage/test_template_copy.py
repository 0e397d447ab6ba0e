"""The test suite copies one migrated database per test (tests/fixtures/database.py). A copy
must be the migrated database, not something like it: on PostgreSQL the owner, the runtime
role's grants and the append-only trigger of the ledger (AU-08) come along with
``CREATE DATABASE … TEMPLATE``; on SQLite the copy keeps its 0600 mode (CF-08)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from storage.migrate import current_heads, upgrade
from tests.fixtures.postgres import PostgresCluster


def _query(cluster: PostgresCluster, dbname: str, sql: str, user: str | None = None) -> list[tuple[object, ...]]:
    with psycopg.connect(f"host={cluster.host} port={cluster.port} user={user or cluster.user} dbname={dbname}",
                         autocommit=True) as conn:
        cursor = conn.execute(sql)  # type: ignore[arg-type]
        return list(cursor.fetchall()) if cursor.description else []


def test_a_template_copy_keeps_owner_grants_and_the_append_only_ledger(pg_cluster: PostgresCluster) -> None:
    tag = f"{os.getpid()}"
    owner, runtime, template, copy = f"tco_{tag}", f"tcr_{tag}", f"tct_{tag}", f"tcc_{tag}"
    _query(pg_cluster, "postgres", f"CREATE ROLE {owner} LOGIN")
    _query(pg_cluster, "postgres", f"CREATE ROLE {runtime} LOGIN")
    try:
        _query(pg_cluster, "postgres", f"CREATE DATABASE {template} OWNER {owner}")
        owner_url = make_url(pg_cluster.url(template)).set(username=owner).render_as_string(hide_password=False)
        assert upgrade(owner_url, runtime_role=runtime)
        _query(pg_cluster, "postgres", f"CREATE DATABASE {copy} TEMPLATE {template} OWNER {owner}")

        # The role name is ours (pid digits), not input.
        grants = f"SELECT table_name, privilege_type FROM information_schema.role_table_grants WHERE grantee = '{runtime}' ORDER BY 1, 2"  # noqa: S608
        owners = "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        assert _query(pg_cluster, copy, grants) == _query(pg_cluster, template, grants) != []
        assert {o for _, o in _query(pg_cluster, copy, owners)} == {owner}
        assert [v for (v,) in _query(pg_cluster, copy, "SELECT version_num FROM alembic_version")] \
            == list(current_heads())
        # The runtime role on the copy: it cannot rewrite the ledger.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _query(pg_cluster, copy, "UPDATE custody_event SET actor = 'forger'", user=runtime)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _query(pg_cluster, copy, "ALTER TABLE custody_event DISABLE TRIGGER USER", user=runtime)
    finally:
        for db in (copy, template):
            _query(pg_cluster, "postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        _query(pg_cluster, "postgres", f"DROP ROLE IF EXISTS {runtime}")
        _query(pg_cluster, "postgres", f"DROP ROLE IF EXISTS {owner}")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_each_sqlite_copy_is_migrated_private_and_its_own(db_url: str, golden_sqlite: Path, db: object) -> None:
    path = Path(db_url.removeprefix("sqlite:///"))
    assert path != golden_sqlite and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(golden_sqlite.stat().st_mode) == 0o600
