"""The audit desk: indexes for searching the custody ledger (issue 15 item 3).

The desk pages newest first by ``seq`` under each filter (storage/audit_search.py), so
each filter gets an index ending in ``seq``: a page is then one index range read however
long the ledger (benchmarks/audit.py at 1,000,000 events). They replace the single-column
indexes on action, report_id and item_id, which the new ones serve as well (a leading
column), so an append maintains two more indexes, not five. ``at`` gets its own for
time-range searches.

Revision ID: 0016_auditdesk
Revises: 0015_staffadmin
"""
from alembic import op

revision = "0016_auditdesk"
down_revision = "0015_staffadmin"
branch_labels = None
depends_on = None

NEW = {
    "ix_custody_event_actor_seq": ["actor", "seq"],
    "ix_custody_event_action_seq": ["action", "seq"],
    "ix_custody_event_report_seq": ["report_id", "seq"],
    "ix_custody_event_item_seq": ["item_id", "seq"],
    "ix_custody_event_at": ["at"],
}
OLD = {
    "ix_custody_event_action": ["action"],
    "ix_custody_event_report_id": ["report_id"],
    "ix_custody_event_item_id": ["item_id"],
}


def upgrade() -> None:
    for name, columns in NEW.items():
        op.create_index(name, "custody_event", columns)
    for name in OLD:
        op.drop_index(name, table_name="custody_event")


def downgrade() -> None:
    for name, columns in OLD.items():
        op.create_index(name, "custody_event", columns)
    for name in NEW:
        op.drop_index(name, table_name="custody_event")
