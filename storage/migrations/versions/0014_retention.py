"""Retention, legal hold and disposal (issue 14 items 1-3): per-report retention dates
set by a person, legal holds on reports and items, the disposal record written before
any byte is destroyed, and the wanted/applied S3 Object Lock of each original.

Revision ID: 0014_retention
Revises: 0013_assign
"""
import sqlalchemy as sa
from alembic import op

from storage.models import UTCDateTime

revision = "0014_retention"
down_revision = "0013_assign"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_retention",
        sa.Column("report_id", sa.String(length=32), sa.ForeignKey("report.id"), primary_key=True),
        sa.Column("retain_until", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("set_by", sa.String(length=200), nullable=False),
        sa.Column("set_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_report_retention_retain_until", "report_retention", ["retain_until"])
    op.create_table(
        "legal_hold",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("report_id", sa.String(length=32), sa.ForeignKey("report.id"), nullable=False),
        sa.Column("item_id", sa.String(length=32), sa.ForeignKey("evidence_item.id"), nullable=True),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("placed_by", sa.String(length=200), nullable=False),
        sa.Column("placed_at", UTCDateTime(), nullable=False),
        sa.Column("released_at", UTCDateTime(), nullable=True),
        sa.Column("released_by", sa.String(length=200), nullable=True),
        sa.Column("release_reason", sa.String(length=1000), nullable=True),
    )
    op.create_index("ix_legal_hold_report_id", "legal_hold", ["report_id"])
    op.create_index("ix_legal_hold_item_id", "legal_hold", ["item_id"])
    op.create_index("ix_legal_hold_released_at", "legal_hold", ["released_at"])
    op.create_table(
        "disposal",
        sa.Column("item_id", sa.String(length=32), sa.ForeignKey("evidence_item.id"), primary_key=True),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("retain_until", UTCDateTime(), nullable=False),
        sa.Column("keys", sa.JSON(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_disposal_finished_at", "disposal", ["finished_at"])
    op.create_table(
        "object_lock",
        sa.Column("item_id", sa.String(length=32), sa.ForeignKey("evidence_item.id"), primary_key=True),
        sa.Column("want_until", UTCDateTime(), nullable=False),
        sa.Column("want_hold", sa.Boolean(), nullable=False),
        sa.Column("applied_until", UTCDateTime(), nullable=True),
        sa.Column("applied_hold", sa.Boolean(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("object_lock")
    op.drop_index("ix_disposal_finished_at", table_name="disposal")
    op.drop_table("disposal")
    op.drop_index("ix_legal_hold_released_at", table_name="legal_hold")
    op.drop_index("ix_legal_hold_item_id", table_name="legal_hold")
    op.drop_index("ix_legal_hold_report_id", table_name="legal_hold")
    op.drop_table("legal_hold")
    op.drop_index("ix_report_retention_retain_until", table_name="report_retention")
    op.drop_table("report_retention")
