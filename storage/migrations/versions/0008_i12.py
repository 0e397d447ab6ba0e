"""Job lanes: long video is claimed by its own worker slots, so photos keep flowing
behind a slow transcode (SECURITY_CHECKLIST BF-19). Existing jobs are in the default lane.

Revision ID: 0008_i12
Revises: 0007_throttle
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_i12"
down_revision = "0007_throttle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite cannot ALTER a column in place.
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("lane", sa.String(length=16), nullable=False, server_default="default"))


def downgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.drop_column("lane")
