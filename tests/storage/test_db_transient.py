"""Which database errors pass (busy, unreachable) and which are bugs: the doors answer the
first with 503 and Retry-After, the second with a 500 (storage.db.is_transient). Real
errors from real databases, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from storage.db import Database, is_transient
from tests.fixtures.ports import closed_port


def raised(engine_url: str, sql: str, **connect_args: object) -> DBAPIError:
    engine = create_engine(engine_url, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    except DBAPIError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError(f"{sql!r} did not fail")


def test_a_busy_or_unreachable_database_passes_and_a_bad_statement_does_not(db: Database) -> None:
    if db.is_postgresql:
        # Nobody listens on the port: connection refused, as when PostgreSQL restarts.
        gone = make_url(db.url).set(port=closed_port())
        assert is_transient(raised(gone.render_as_string(hide_password=False), "SELECT 1", connect_timeout=2))
    else:
        # Another writer holds the lock past our (zero) busy timeout: "database is locked".
        holder = create_engine(db.url, connect_args={"isolation_level": None})
        try:
            with holder.connect() as conn:
                conn.exec_driver_sql("BEGIN EXCLUSIVE")
                locked = raised(db.url, "SELECT count(*) FROM report", timeout=0)
                conn.exec_driver_sql("ROLLBACK")
        finally:
            holder.dispose()
        assert "database is locked" in str(locked)
        assert is_transient(locked)
    # SQLite calls a syntax error or a missing table an OperationalError too: a bug, not a fault.
    assert not is_transient(raised(db.url, "SELEKT 1"))
    assert not is_transient(raised(db.url, "SELECT * FROM no_such_table"))
    assert not is_transient(ValueError("database is locked"))


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_classification_holds_for_a_dropped_connection(db: Database) -> None:
    """A connection the server ended (admin shutdown, fail-over) is a passing fault."""
    engine = create_engine(db.url)
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with db.engine.connect() as admin:
                admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(DBAPIError) as caught:
                conn.execute(text("SELECT 1"))
        assert is_transient(caught.value)
    finally:
        engine.dispose()
