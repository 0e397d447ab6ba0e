"""Run the Alembic migrations programmatically (``exhibit db upgrade``, tests), apply the
runtime role's grants (``storage.roles``), and tell whether a database's schema is the
one this code expects (``check_schema``: ``exhibit serve`` and every command refuse an
older one rather than migrating it themselves: only the owner role migrates)."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from storage.db import Database
from storage.errors import DomainError

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # '%' must be doubled for ConfigParser interpolation (a password may contain one).
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head", *, runtime_role: str | None = None) -> dict[str, str]:
    """Migrate the database at ``url`` (the owner's URL), then, on PostgreSQL with a
    ``runtime_role``, give that role exactly its grants on every table (``storage.roles``).
    Returns the grants applied ({} when none)."""
    from storage.db import secure_sqlite_file

    secure_sqlite_file(url)
    command.upgrade(alembic_config(url), revision)
    if not runtime_role:
        return {}
    from storage.roles import grant_runtime

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            return grant_runtime(conn, runtime_role)
    finally:
        engine.dispose()


def current_heads() -> tuple[str, ...]:
    from alembic.script import ScriptDirectory

    return tuple(ScriptDirectory(str(MIGRATIONS)).get_heads())


class SchemaOutOfDate(Exception):
    code = "ERR_DB_NOT_MIGRATED"


def schema_revisions(connection: object) -> list[str]:
    """The revisions a database is stamped with ([] when it was never migrated)."""
    tables = inspect(connection).get_table_names()
    if "alembic_version" not in tables:
        return []
    return list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all())  # type: ignore[attr-defined]


def check_schema(connection: object) -> None:
    """Raise ``SchemaOutOfDate`` with a plain instruction when the schema is not the one
    this code was written for."""
    have = set(schema_revisions(connection))
    if have != set(current_heads()):
        state = "has no schema" if not have else f"is at {', '.join(sorted(have))}, this code needs {', '.join(current_heads())}"
        raise SchemaOutOfDate(
            f"the database {state}: run `exhibit db upgrade` (as the owner role, EXHIBIT_MIGRATION_DATABASE_URL) first"
        )


def missing_sqlite_file(url: str) -> str | None:
    """The path of the SQLite database ``url`` names when no file is there (None for a
    file that exists, or for another database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:" \
            or parsed.database.startswith("file:"):
        return None
    path = os.path.abspath(parsed.database)
    return None if os.path.exists(path) else path


def refuse_missing_sqlite(url: str) -> None:
    """``DomainError`` (ERR_NO_DATABASE) naming the file when ``url`` is a SQLite file that
    is not there: opening it would leave an empty one behind."""
    missing = missing_sqlite_file(url)
    if missing is not None:
        raise DomainError(f"no database at {missing}: check EXHIBIT_DATA_DIR / EXHIBIT_DATABASE_URL, or create it "
                          "with `exhibit db upgrade`", code="ERR_NO_DATABASE")


def open_current(url: str) -> Database:
    """A ``Database`` on ``url`` whose schema is the one this code was written for, or
    ``DomainError`` (ERR_DB_NOT_MIGRATED) with the plain instruction. Servers and commands
    never migrate on their own: they run as the runtime role, which owns nothing and cannot
    (AU-08); `exhibit db upgrade` runs as the owner.

    Nor do they create a database: opening a SQLite file that is not there would leave an
    empty one behind (a typo in EXHIBIT_DATA_DIR then looks like a wiped installation), so
    a missing one is ``DomainError`` (ERR_NO_DATABASE) naming where it was looked for;
    likewise a PostgreSQL database that does not exist (issue 15 item 2)."""
    refuse_missing_sqlite(url)
    db = Database(url)
    try:
        with db.read() as session:
            check_schema(session.connection())
    except SchemaOutOfDate as exc:
        db.dispose()
        raise DomainError(str(exc), code=exc.code) from None
    except OperationalError as exc:
        db.dispose()
        if "does not exist" not in str(exc.orig):
            raise
        where = make_url(url)
        raise DomainError(f"no database {where.database} on {where.host or 'localhost'}:{where.port or 5432}: "
                          "check EXHIBIT_DATABASE_URL, or create it and run `exhibit db upgrade`",
                          code="ERR_NO_DATABASE") from None
    return db
