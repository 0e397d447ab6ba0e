"""The checkpoint table append-only like the ledger; both guarded on SQLite too; the
state of the periodic ledger verification.

* PostgreSQL: ``checkpoint`` refuses UPDATE, DELETE and TRUNCATE by trigger, like
  ``custody_event`` since 0001. With the runtime role holding only SELECT and INSERT on
  both (``storage.roles``) and owning nothing, the role that serves requests can neither
  rewrite them nor switch the triggers off (SECURITY_CHECKLIST AU-08).
* SQLite: the same refusals by trigger. Whoever can write the database file can drop
  a trigger, so on SQLite this guards against mistakes and the application's own bugs,
  not an attacker; the external checkpoint catches the attacker (README, "Custody
  ledger on SQLite").
* ``ledger_status``: where the periodic verifier (``storage.ledger_watch``) records its
  last outcome, for the admin page, /readyz and the log (AU-05, AU-10).

Revision ID: 0010_ledger
Revises: 0009_intake
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.models

revision = "0010_ledger"
down_revision = "0009_intake"
branch_labels = None
depends_on = None

APPEND_ONLY = ("custody_event", "checkpoint")


def upgrade() -> None:
    op.create_table(
        "ledger_status",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("checked_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("head_seq", sa.BigInteger(), nullable=False),
        sa.Column("first_bad_seq", sa.BigInteger(), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("checkpoint_seq", sa.BigInteger(), nullable=True),
        sa.Column("destination", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION checkpoint_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'checkpoint is append-only (% refused)', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER checkpoint_no_update_delete BEFORE UPDATE OR DELETE ON checkpoint "
            "FOR EACH ROW EXECUTE FUNCTION checkpoint_append_only()"
        )
        op.execute(
            "CREATE TRIGGER checkpoint_no_truncate BEFORE TRUNCATE ON checkpoint "
            "FOR EACH STATEMENT EXECUTE FUNCTION checkpoint_append_only()"
        )
        return
    # SQLite has no TRUNCATE: "DELETE FROM t" without WHERE is the same statement, and
    # SQLite does not take its truncate shortcut on a table with a DELETE trigger.
    for table in APPEND_ONLY:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only ({verb} refused)'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS checkpoint_no_truncate ON checkpoint")
        op.execute("DROP TRIGGER IF EXISTS checkpoint_no_update_delete ON checkpoint")
        op.execute("DROP FUNCTION IF EXISTS checkpoint_append_only()")
    else:
        for table in APPEND_ONLY:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
    op.drop_table("ledger_status")
