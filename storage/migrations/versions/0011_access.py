"""Share grants: contact details and precise location only where a share says so.

A partner's item page is built from its own field list (reviewer_ui/partner.py); the
citizen's contact details and the precise location (the place they typed, GPS in the
file's metadata) are on it only when the share that reaches the item grants them. Both
default to off, also for every share made before this migration (least disclosure).

Revision ID: 0011_access
Revises: 0010_ledger
"""
import sqlalchemy as sa
from alembic import op

revision = "0011_access"
down_revision = "0010_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("share") as batch:
        batch.add_column(sa.Column("grant_contact", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("grant_location", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("share") as batch:
        batch.drop_column("grant_location")
        batch.drop_column("grant_contact")
