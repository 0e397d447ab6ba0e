"""Migration 0009_intake: scoped intake API keys keep the reports they made before.

Which key created a report is taken from the custody ledger (``report.created`` by
``apikey:<id>``); a report staff created gets no key, and no key gains a report."""

from __future__ import annotations

from alembic import command
from sqlmodel import select

from storage import apikeys, reports
from storage.db import Database
from storage.migrate import alembic_config, upgrade
from storage.models import Report


def test_reports_made_by_a_key_before_scoping_stay_in_its_scope(db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url)
    try:
        with db.write() as s:
            key, _ = apikeys.add_api_key(db, s, "forms", actor="test")
            key_id = key.id
            reports.create_report(db, s, "BY-KEY", "other", actor=f"apikey:{key_id}")
            reports.create_report(db, s, "BY-STAFF", "other", actor="user:officer")
    finally:
        db.dispose()
    # As if these rows had been written before 0009_intake: back to the revision before
    # it (the column goes), then forward again.
    command.downgrade(alembic_config(db_url), "0009_intake-1")
    upgrade(db_url)
    db = Database(db_url)
    try:
        with db.read() as s:
            got = {r.reference: r.created_by_api_key_id for r in s.exec(select(Report)).all()}
            key = apikeys.list_api_keys(s)[0]
            assert got == {"BY-KEY": key_id, "BY-STAFF": None}
            assert apikeys.report_for_key(s, key, "BY-KEY").reference == "BY-KEY"
    finally:
        db.dispose()
