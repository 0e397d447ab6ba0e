"""`exhibit serve --demo` (exhibit/demo.py): the demo officer owns the demo report, so an
officer who signs in to the demo finds it in "My reports" instead of a 404 (issue 15
item 1); on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import col, select

from exhibit.demo import DEMO_OFFICER, DEMO_REPORT, ensure_demo
from reviewer_ui import permissions
from storage import assignments
from storage.db import Database
from storage.models import CustodyEvent, Report, User
from storage.reports import create_report
from storage.settings import Settings


def _settings(tmp_path: Path, db: Database) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db.url, storage_url=f"file://{tmp_path / 'blobs'}",
                    public_url="http://127.0.0.1:8000")


def test_the_demo_officer_owns_the_demo_report(db: Database, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    shown = ensure_demo(_settings(tmp_path, db), db)
    printed = capsys.readouterr().out
    assert shown["officer_email"] == DEMO_OFFICER and shown["officer_password"] in printed
    with db.read() as s:
        officer = s.exec(select(User).where(col(User.email) == DEMO_OFFICER)).one()
        report = s.exec(select(Report).where(col(Report.reference) == DEMO_REPORT)).one()
        assert permissions.can_view_report(s, officer, report)
        rows, _ = assignments.queue(s, officer)
    assert [r.report.reference for r in rows] == [DEMO_REPORT]
    again = ensure_demo(_settings(tmp_path, db), db)
    assert "officer_password" not in again  # shown once, never again


def test_an_older_demo_report_without_owner_is_given_one(db: Database, tmp_path: Path) -> None:
    with db.write() as s:
        create_report(db, s, DEMO_REPORT, "rtc", actor="exhibit:demo")
    ensure_demo(_settings(tmp_path, db), db)
    with db.read() as s:
        report = s.exec(select(Report).where(col(Report.reference) == DEMO_REPORT)).one()
        officer = s.exec(select(User).where(col(User.email) == DEMO_OFFICER)).one()
        changed = s.exec(select(CustodyEvent).where(col(CustodyEvent.action) == "report.owner_changed")).one()
    assert report.owner_id == officer.id
    assert changed.detail is not None and changed.detail["to"] == DEMO_OFFICER
