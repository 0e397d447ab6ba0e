"""The two PostgreSQL roles and what the runtime role may do (SECURITY_CHECKLIST AU-08).

* The **owner** (``EXHIBIT_MIGRATION_DATABASE_URL``) owns every table, trigger and
  function; only ``exhibit db upgrade`` connects as it.
* The **runtime** role (``EXHIBIT_DATABASE_URL``) serves requests and runs workers. It
  owns nothing, so it cannot ALTER a table, switch a trigger off, drop one or replace its
  function. It gets SELECT and INSERT only on the append-only tables (``custody_event``,
  ``checkpoint``): it can add to history, never edit, delete, truncate or re-chain it.
  Every other table gets SELECT, INSERT, UPDATE, DELETE (never TRUNCATE, REFERENCES or
  TRIGGER); ``alembic_version`` SELECT only (``exhibit serve`` reads it to refuse an old
  schema).

The threat: an attacker who takes over the application (or its database credentials)
rewrites the custody ledger, re-chains the tail and re-signs it, so that ``exhibit audit
verify`` still exits 0 (issue 11, item 3). With these grants the database refuses.

``grant_runtime`` is applied by ``exhibit db upgrade`` after every upgrade, over every
table in the schema at that moment, so a table created by a later migration gets its
grants in the same command (a new append-only table must be added to ``APPEND_ONLY``).
It also revokes whatever else the role held, so running it again repairs drift.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

# Tables the runtime role may read and append to, never change (AU-08).
APPEND_ONLY = frozenset({"custody_event", "checkpoint"})
# Tables the runtime role may only read.
READ_ONLY = frozenset({"alembic_version"})
APPEND_ONLY_PRIVILEGES = "SELECT, INSERT"
READ_ONLY_PRIVILEGES = "SELECT"
DML_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"


class RoleError(ValueError):
    """The runtime role cannot be made safe as it is (it owns tables, is a superuser...)."""


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def runtime_privileges(table: str) -> str:
    if table in APPEND_ONLY:
        return APPEND_ONLY_PRIVILEGES
    if table in READ_ONLY:
        return READ_ONLY_PRIVILEGES
    return DML_PRIVILEGES


def grant_runtime(conn: Connection, role: str) -> dict[str, str]:
    """Give ``role`` exactly the runtime privileges on every table of the current schema,
    inside the caller's transaction. Returns {table: privileges}. Raises ``RoleError``
    when the role could undo the guards whatever it is granted: it is a superuser, or it
    owns (or is a member of the role that owns) the schema, a table or a function."""
    if conn.dialect.name != "postgresql":
        raise RoleError("database roles exist on PostgreSQL only")
    found = conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
    if found is None:
        raise RoleError(f"no role {role!r}: create it first (CREATE ROLE {role} LOGIN PASSWORD '...')")
    if found[0]:
        raise RoleError(f"role {role!r} is a superuser: it bypasses every grant and trigger")
    # Ownership (direct, or through membership in the owning role) would let the role
    # ALTER TABLE ... DISABLE TRIGGER, DROP TRIGGER or CREATE OR REPLACE the trigger
    # function: grants cannot take that away, so refuse rather than pretend.
    owned = conn.execute(text(
        "SELECT 'schema ' || n.nspname FROM pg_namespace n"
        " WHERE n.nspname = current_schema() AND pg_has_role(:r, n.nspowner, 'USAGE')"
        " UNION ALL SELECT 'table ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND pg_has_role(:r, c.relowner, 'USAGE')"
        " UNION ALL SELECT 'function ' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = current_schema() AND pg_has_role(:r, p.proowner, 'USAGE')"
    ), {"r": role}).scalars().all()
    if owned:
        raise RoleError(
            f"role {role!r} owns (or is a member of the owner of) {', '.join(sorted(owned)[:5])}: "
            "the runtime role must own nothing; as a superuser run "
            f"REASSIGN OWNED BY {role} TO <owner role>, and make the owner role the one in "
            "EXHIBIT_MIGRATION_DATABASE_URL"
        )
    q = _quote(conn, role)
    schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    s = _quote(conn, schema)
    tables = conn.execute(text(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
    )).scalars().all()
    conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {q}"))
    conn.execute(text(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {s} FROM {q}"))
    conn.execute(text(f"REVOKE CREATE ON SCHEMA {s} FROM {q}"))
    conn.execute(text(f"GRANT USAGE ON SCHEMA {s} TO {q}"))
    granted: dict[str, str] = {}
    for table in tables:
        privileges = runtime_privileges(table)
        conn.execute(text(f"GRANT {privileges} ON {s}.{_quote(conn, table)} TO {q}"))
        granted[table] = privileges
    # nextval() for the identity columns of the tables it inserts into; not UPDATE
    # (setval would let it move a sequence).
    conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {q}"))
    return granted


def role_of(url: str) -> str | None:
    """The user name in a database URL (the role it connects as)."""
    from sqlalchemy.engine import make_url

    return make_url(url).username
