"""`exhibit reports create --owner --unit` and `exhibit reports assign REF --to EMAIL
[--owner]` (issue 15 item 1), on SQLite and PostgreSQL: who works a report, set from the
command line, each change a custody event; mistakes are exit 2 with a stable code."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import col, select

from storage.db import Database
from storage.models import CustodyEvent
from tests.exhibit.test_cli import Cli


@pytest.fixture
def cli(tmp_path: Path, db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch) -> Cli:
    # ``db``: start from the migrated template (see tests/exhibit/test_cli.py's ``cli``).
    c = Cli(tmp_path / "data", db_url, monkeypatch)
    assert c.json("db", "upgrade")["ok"] is True
    c.json("users", "add", "sgt.north@force.test", "--role", "supervisor", "--unit", "North")
    c.json("users", "add", "pc.north@force.test", "--role", "officer", "--unit", "North")
    c.json("users", "add", "pc.south@force.test", "--role", "officer", "--unit", "South")
    c.json("users", "add", "auditor@force.test", "--role", "auditor")
    return c


def _events(db_url: str, action: str) -> list[CustodyEvent]:
    db = Database(db_url)
    try:
        with db.read() as s:
            return list(s.exec(select(CustodyEvent).where(col(CustodyEvent.action) == action)
                               .order_by(col(CustodyEvent.seq))))
    finally:
        db.dispose()


def test_create_with_owner_takes_the_owners_unit_and_records_both(cli: Cli, db_url: str) -> None:
    made = cli.json("reports", "create", "RTC/9", "--kind", "rtc", "--owner", "PC.North@force.test")
    assert (made["owner"], made["unit"]) == ("pc.north@force.test", "North")
    other = cli.json("reports", "create", "RTC/10", "--kind", "rtc", "--owner", "pc.north@force.test",
                     "--unit", "Roads Policing")
    assert other["unit"] == "Roads Policing"
    created = _events(db_url, "report.created")
    assert created[0].detail is not None and created[0].detail["owner"] == "pc.north@force.test"
    assert created[0].detail["unit"] == "North"
    plain = cli.run("reports", "create", "RTC/11", "--kind", "rtc")
    assert plain.returncode == 0 and "owner" not in plain.stdout


def test_an_unknown_or_unfit_owner_is_refused_and_nothing_is_created(cli: Cli) -> None:
    for email in ("nobody@force.test", "auditor@force.test"):
        out = cli.json("reports", "create", "RTC/1", "--kind", "rtc", "--owner", email, code=2)
        assert out["error"]["code"] == "ERR_ASSIGNEE_UNKNOWN"
    listed = cli.json("items", "list", "RTC/1", code=2)
    assert listed["error"]["code"] == "ERR_REPORT_NOT_FOUND"


def test_assign_and_reassign_the_owner(cli: Cli, db_url: str) -> None:
    cli.json("reports", "create", "CR/1", "--kind", "crime", "--owner", "sgt.north@force.test")
    out = cli.json("reports", "assign", "CR/1", "--to", "pc.north@force.test")
    assert out == {"reference": "CR/1", "changed": True, "owner": "sgt.north@force.test",
                   "assignees": ["pc.north@force.test"], "unit": "North"}
    again = cli.json("reports", "assign", "CR/1", "--to", "pc.north@force.test")
    assert again["changed"] is False
    moved = cli.json("reports", "assign", "CR/1", "--to", "pc.south@force.test", "--owner")
    assert moved["owner"] == "pc.south@force.test" and moved["assignees"] == ["pc.north@force.test"]
    human = cli.run("reports", "assign", "CR/1", "--to", "sgt.north@force.test")
    assert human.returncode == 0 and human.stdout.strip() == "sgt.north@force.test is assigned to CR/1"
    assigned = _events(db_url, "report.assigned")
    assert [e.detail["user"] for e in assigned if e.detail] == ["pc.north@force.test", "sgt.north@force.test"]
    assert all(e.actor.startswith("cli") for e in assigned)
    changed = _events(db_url, "report.owner_changed")
    assert len(changed) == 1 and changed[0].detail is not None
    assert (changed[0].detail["from"], changed[0].detail["to"]) == ("sgt.north@force.test", "pc.south@force.test")
    assert cli.json("reports", "assign", "NOPE", "--to", "pc.north@force.test", code=2)["error"]["code"] == \
        "ERR_REPORT_NOT_FOUND"
    assert cli.json("reports", "assign", "CR/1", "--to", "auditor@force.test", code=2)["error"]["code"] == \
        "ERR_ASSIGNEE_UNKNOWN"
    assert cli.json("audit", "verify", code=0)["ok"] is True
