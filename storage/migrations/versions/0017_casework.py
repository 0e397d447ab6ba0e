"""The audit desk at 1,000,000 events: a time range's index carries the action and seq
(i15 item 4).

``storage.audit_search`` reads a page's seqs from an index alone, then those rows by
primary key. A search by action over a time range ("media.* in this week") had only
``(at)`` to go on, so every event of the week was read from the table to test its action
(850 table pages for 51 rows on PostgreSQL, p95 265 ms in benchmarks/audit.py).
``(at, action, seq)`` answers the same from the index, and still serves every search by
time range alone (its leading column), so it replaces ``(at)``: an append maintains no
more indexes than before.

Revision ID: 0017_casework
Revises: 0016_auditdesk
"""
from alembic import op

revision = "0017_casework"
down_revision = "0016_auditdesk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_custody_event_at_action_seq", "custody_event", ["at", "action", "seq"])
    op.drop_index("ix_custody_event_at", table_name="custody_event")


def downgrade() -> None:
    op.create_index("ix_custody_event_at", "custody_event", ["at"])
    op.drop_index("ix_custody_event_at_action_seq", table_name="custody_event")
