"""The two PostgreSQL roles (issue 11 item 3, SECURITY_CHECKLIST AU-08): the owner
migrates; the runtime role serves, appends to the ledger, and cannot rewrite it.

The attack of the issue, tried as the runtime role: switch the append-only trigger off,
edit an event, re-chain the tail, truncate, alter, drop the trigger, replace its
function, and the same against the stored checkpoints. Each is refused by PostgreSQL,
and `exhibit audit verify` still finds the history it had."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from storage import ledger
from storage.db import Database
from storage.migrate import upgrade
from storage.roles import APPEND_ONLY
from tests.exhibit.test_cli import Cli
from tests.fixtures.postgres import PostgresCluster

_names = itertools.count()


@dataclass
class Roles:
    owner_url: str
    runtime_url: str
    runtime: str
    owner: str


def _admin(cluster: PostgresCluster, sql: str) -> None:
    with psycopg.connect(f"host={cluster.host} port={cluster.port} user={cluster.user} dbname=postgres",
                         autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture
def roles(pg_cluster: PostgresCluster) -> Iterator[Roles]:
    # Roles are cluster-wide: unique names per test. The owner is an ordinary role that
    # owns the database, as in a real deployment; the runtime role owns nothing.
    n = next(_names)
    owner, runtime, dbname = f"own_{os.getpid()}_{n}", f"rt_{os.getpid()}_{n}", f"roles_{os.getpid()}_{n}"
    _admin(pg_cluster, f"CREATE ROLE {owner} LOGIN")
    _admin(pg_cluster, f"CREATE ROLE {runtime} LOGIN")
    _admin(pg_cluster, f"CREATE DATABASE {dbname} OWNER {owner}")
    base = make_url(pg_cluster.url(dbname))
    try:
        yield Roles(base.set(username=owner).render_as_string(hide_password=False),
                    base.set(username=runtime).render_as_string(hide_password=False), runtime, owner)
    finally:
        _admin(pg_cluster, f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        _admin(pg_cluster, f"DROP ROLE IF EXISTS {runtime}")
        _admin(pg_cluster, f"DROP ROLE IF EXISTS {owner}")


def _cli(roles: Roles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    cli = Cli(tmp_path / "data", roles.runtime_url, monkeypatch)
    cli.env["EXHIBIT_MIGRATION_DATABASE_URL"] = roles.owner_url
    return cli


ATTACKS = [
    "ALTER TABLE custody_event DISABLE TRIGGER USER",
    "ALTER TABLE custody_event DISABLE TRIGGER ALL",
    "UPDATE custody_event SET actor = 'forger' WHERE seq = 2",
    # Re-chain the tail after an edit: rewrite the hashes that follow.
    "UPDATE custody_event SET prev_hash = hash, hash = prev_hash WHERE seq >= 2",
    "DELETE FROM custody_event WHERE seq >= 2",
    "TRUNCATE custody_event",
    "ALTER TABLE custody_event ADD COLUMN note text",
    "ALTER TABLE custody_event OWNER TO CURRENT_USER",
    "DROP TRIGGER custody_event_no_update_delete ON custody_event",
    "DROP TABLE custody_event",
    "CREATE OR REPLACE FUNCTION custody_event_append_only() RETURNS trigger AS $$ BEGIN RETURN NEW; END; $$"
    " LANGUAGE plpgsql",
    "ALTER TABLE checkpoint DISABLE TRIGGER USER",
    "UPDATE checkpoint SET seq = 1",
    "DELETE FROM checkpoint",
    "TRUNCATE checkpoint",
    "DROP TRIGGER checkpoint_no_update_delete ON checkpoint",
    "CREATE OR REPLACE FUNCTION checkpoint_append_only() RETURNS trigger AS $$ BEGIN RETURN NEW; END; $$"
    " LANGUAGE plpgsql",
    # Somewhere to build a replacement table, or a trigger on another table.
    "CREATE TABLE custody_event_copy (seq bigint)",
    "CREATE TRIGGER t BEFORE UPDATE ON report FOR EACH ROW EXECUTE FUNCTION custody_event_append_only()",
    "TRUNCATE report CASCADE",
]


def test_the_runtime_role_cannot_rewrite_the_ledger_or_its_checkpoints(
        roles: Roles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = _cli(roles, tmp_path, monkeypatch)
    upgraded = cli.json("db", "upgrade")
    assert upgraded["runtime_role"] == roles.runtime
    assert upgraded["grants"]["custody_event"] == "SELECT, INSERT"
    # The application works as the runtime role: it appends events and stores checkpoints.
    for i in range(3):
        cli.json("reports", "create", f"RT-{i}", "--kind", "other")
    document = cli.json("audit", "checkpoint", "--out", str(tmp_path / "cp.json"))
    assert document["checkpoint"]["seq"] == 3

    runtime = Database(roles.runtime_url)
    try:
        for sql in ATTACKS:
            with pytest.raises(DBAPIError) as refused, runtime.engine.begin() as conn:
                conn.execute(text(sql))
            assert isinstance(refused.value.orig, psycopg.errors.InsufficientPrivilege), (sql, refused.value)
    finally:
        runtime.dispose()
    cli.env["EXHIBIT_LEDGER_PUBLIC_KEY"] = document["public_key"]
    after = cli.json("audit", "verify")
    assert after["ok"] is True and after["count"] == 3 and after["checkpoint_seq"] == 3


def test_every_table_gets_its_grants_including_tables_of_later_migrations(roles: Roles) -> None:
    # As if the deployment had been granted at 0006 and then upgraded to a release whose
    # migration creates a new table (ledger_status came with 0007).
    upgrade(roles.owner_url, "0006", runtime_role=roles.runtime)
    granted = upgrade(roles.owner_url, runtime_role=roles.runtime)
    assert "ledger_status" in granted
    owner = Database(roles.owner_url)
    try:
        with owner.read() as s:
            tables = s.exec(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()  # type: ignore[call-overload]
            assert set(granted) == set(tables)
            for table in tables:
                def has(priv: str, table: str = table) -> bool:
                    return bool(s.exec(text("SELECT has_table_privilege(:r, :t, :p)"),  # type: ignore[call-overload]
                                       params={"r": roles.runtime, "t": table, "p": priv}).scalar_one())
                # Never a right that changes a table's shape or guards.
                assert not has("TRUNCATE") and not has("TRIGGER") and not has("REFERENCES"), table
                assert has("SELECT"), table
                if table in APPEND_ONLY:
                    assert has("INSERT") and not has("UPDATE") and not has("DELETE"), table
                elif table == "alembic_version":
                    assert not has("INSERT") and not has("UPDATE") and not has("DELETE")
                else:
                    assert has("INSERT") and has("UPDATE") and has("DELETE"), table
    finally:
        owner.dispose()
    runtime = Database(roles.runtime_url)
    try:
        with runtime.write() as s:
            ledger.append(runtime, s, actor="test", action="test.event")
            s.exec(text("INSERT INTO ledger_status (name, ok, checked_at, head_seq, destination)"  # type: ignore[call-overload]
                        " VALUES ('t', true, now(), 1, '')"))
    finally:
        runtime.dispose()


def test_a_role_that_could_undo_the_guards_is_refused(roles: Roles, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cli = _cli(roles, tmp_path, monkeypatch)
    cli.json("db", "upgrade")
    # The owner as "runtime role": it owns the tables, so grants cannot bind it.
    refused = cli.json("db", "grant", "--runtime-role", roles.owner, code=2)
    assert refused["error"]["code"] == "ERR_ROLE_UNSAFE" and "owns" in refused["error"]["message"]
    assert cli.json("db", "grant", "--runtime-role", "postgres", code=2)["error"]["code"] == "ERR_ROLE_UNSAFE"
    assert cli.json("db", "grant", "--runtime-role", roles.runtime)["grants"]["checkpoint"] == "SELECT, INSERT"
