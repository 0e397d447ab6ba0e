"""Schema changes for the reviewer UI: indexes for keyset pagination.

The report list pages newest-first over (created_at, id), optionally within a kind; the
evidence grid pages over (received_at, id) within a report; the "new evidence waiting"
filter and counts probe (report_id, triage). With these the pages stay fast at 100,000
items (benchmarks/review.py).

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa  # noqa: F401

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_report_created_id", "report", ["created_at", "id"])
    op.create_index("ix_report_kind_created_id", "report", ["kind", "created_at", "id"])
    op.create_index("ix_item_report_received_id", "evidence_item", ["report_id", "received_at", "id"])
    op.create_index("ix_item_report_triage", "evidence_item", ["report_id", "triage"])


def downgrade() -> None:
    op.drop_index("ix_item_report_triage", table_name="evidence_item")
    op.drop_index("ix_item_report_received_id", table_name="evidence_item")
    op.drop_index("ix_report_kind_created_id", table_name="report")
    op.drop_index("ix_report_created_id", table_name="report")
