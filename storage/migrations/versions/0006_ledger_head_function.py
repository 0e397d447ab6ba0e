"""PostgreSQL: lock the custody ledger and read its head in one round trip.

``ledger.append`` used to send three statements before its INSERT: take the advisory
lock, read the head, read the clock. Each is a round trip to the server (about 1 ms on a
loaded machine), paid by every audited page view while the lock is held. This function
does the three in one call.

Why a function and not one plain SELECT: under READ COMMITTED a statement sees the
snapshot taken when it started. A single statement that both waits for the lock and
reads the head would read a head from before the wait, and two appenders could both
extend it (a fork, caught only by the unique constraints). A VOLATILE PL/pgSQL function
takes a fresh snapshot for each query it runs, so the head is read after the lock is
held (PostgreSQL manual, "Function Volatility Categories").

Revision ID: 0006
Revises: 0005
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE OR REPLACE FUNCTION exhibit_ledger_head(lock_key bigint)
        RETURNS TABLE (head_seq bigint, head_hash varchar, now timestamptz)
        LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock(lock_key);
            -- A new snapshot, taken now that the lock is held.
            RETURN QUERY
                SELECT h.seq::bigint, h.hash::varchar, clock_timestamp()
                FROM (SELECT 1) AS one
                LEFT JOIN LATERAL (
                    SELECT seq, hash FROM custody_event ORDER BY seq DESC LIMIT 1
                ) AS h ON true;
        END
        $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS exhibit_ledger_head(bigint)")
