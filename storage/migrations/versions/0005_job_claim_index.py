"""Index for the job claim query.

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_job_claim", "job", ["state", "run_after", "id"])


def downgrade() -> None:
    op.drop_index("ix_job_claim", table_name="job")
