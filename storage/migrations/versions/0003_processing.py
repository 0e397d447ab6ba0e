"""Schema changes for the processing worker: none needed. The worker uses the columns
0001 created (evidence_item.verified_sha256, detected_type, verdict, verdict_signature,
signature_db_version, media_metadata, progress; derivative.*; job.*). The revision is
kept so the chain 0002 -> 0003 -> 0004 stays as planned.

Revision ID: 0003
Revises: 0002
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
