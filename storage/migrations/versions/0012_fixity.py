"""Fixity: one row per re-hash of an original at rest (issue 14 item 4).

Revision ID: 0012_fixity
Revises: 0011_access
"""
import sqlalchemy as sa
from alembic import op

from storage.models import UTCDateTime

revision = "0012_fixity"
down_revision = "0011_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fixity_check",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.String(length=32), sa.ForeignKey("evidence_item.id"), nullable=False),
        sa.Column("checked_at", UTCDateTime(), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("blob_key", sa.String(length=200), nullable=False),
        sa.Column("expected_sha256", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
    )
    op.create_index("ix_fixity_item_at", "fixity_check", ["item_id", "checked_at"])
    op.create_index("ix_fixity_check_result", "fixity_check", ["result"])


def downgrade() -> None:
    op.drop_index("ix_fixity_check_result", table_name="fixity_check")
    op.drop_index("ix_fixity_item_at", table_name="fixity_check")
    op.drop_table("fixity_check")
