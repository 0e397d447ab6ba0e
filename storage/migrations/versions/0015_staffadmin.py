"""Staff administration: ``user.must_change_password``, set when the account's password
is a one-time one (``exhibit users add`` without a password, an admin's "new password",
``exhibit users passwd`` without one): its sign-in leads to the change-password page and
nowhere else until a password of the owner's own is set (issue 15 item 2).

Revision ID: 0015_staffadmin
Revises: 0014_retention
"""
import sqlalchemy as sa
from alembic import op

revision = "0015_staffadmin"
down_revision = "0014_retention"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing accounts keep working as they are (false): nobody is locked out by the upgrade.
    with op.batch_alter_table("user") as batch_op:
        batch_op.add_column(sa.Column("must_change_password", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("user") as batch_op:
        batch_op.drop_column("must_change_password")
