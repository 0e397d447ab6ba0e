"""Assignment (issue 15 item 1): when each user last looked at each report
(``report_seen``, for the counts of "My reports"), and an index for a supervisor's list of
their unit's reports. ``user.unit``, ``report.unit``, ``report.owner_id`` and
``report_assignment`` exist since 0001.

Revision ID: 0013_assign
Revises: 0012_fixity
"""
import sqlalchemy as sa
from alembic import op

from storage.models import UTCDateTime

revision = "0013_assign"
down_revision = "0012_fixity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_seen",
        sa.Column("user_id", sa.String(length=32), sa.ForeignKey("user.id"), primary_key=True),
        sa.Column("report_id", sa.String(length=32), sa.ForeignKey("report.id"), primary_key=True),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_report_unit_created_id", "report", ["unit", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_report_unit_created_id", table_name="report")
    op.drop_table("report_seen")
