"""Throttle counters in the database (shared by every process and node) and the per-account
TOTP guard.

Revision ID: 0007_throttle
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

from storage.models import UTCDateTime

revision = "0007_throttle"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "throttle_counter",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_failure", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(op.f("ix_throttle_counter_last_failure"), "throttle_counter", ["last_failure"])
    op.create_table(
        "totp_guard",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", UTCDateTime(timezone=True), nullable=False),
        sa.Column("locked_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("user_id"),
    )


def downgrade() -> None:
    op.drop_table("totp_guard")
    op.drop_index(op.f("ix_throttle_counter_last_failure"), table_name="throttle_counter")
    op.drop_table("throttle_counter")
