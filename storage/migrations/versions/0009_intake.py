"""Scoped intake API keys: ``api_key.unit`` and ``report.created_by_api_key_id``.

A key reads and issues links only into the reports it created, or those of its unit
(i11 item 5). Existing keys get no unit (scoping fails closed: no key gains a report it
did not make). Which key created an existing report is read from the custody ledger's
``report.created`` events (actor ``apikey:<id>``), so integrations keep their reports.

Revision ID: 0009_intake
Revises: 0008_i12
"""
import sqlalchemy as sa
from alembic import op

revision = "0009_intake"
down_revision = "0008_i12"
branch_labels = None
depends_on = None

FK = "fk_report_created_by_api_key_id_api_key"


def upgrade() -> None:
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unit", sa.String(length=100), nullable=True))
    with op.batch_alter_table("report", schema=None) as batch_op:
        batch_op.add_column(sa.Column("created_by_api_key_id", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_report_created_by_api_key_id"), ["created_by_api_key_id"], unique=False)
        batch_op.create_foreign_key(FK, "api_key", ["created_by_api_key_id"], ["id"])
    # Read-only use of the ledger: the event that says who created each report.
    op.execute(
        """
        UPDATE report SET created_by_api_key_id = (
            SELECT substr(e.actor, 8) FROM custody_event e
            WHERE e.report_id = report.id AND e.action = 'report.created' AND e.actor LIKE 'apikey:%'
              AND substr(e.actor, 8) IN (SELECT k.id FROM api_key k)
            ORDER BY e.seq LIMIT 1)
        WHERE created_by_api_key_id IS NULL
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("report", schema=None) as batch_op:
        batch_op.drop_constraint(FK, type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_report_created_by_api_key_id"))
        batch_op.drop_column("created_by_api_key_id")
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_column("unit")
