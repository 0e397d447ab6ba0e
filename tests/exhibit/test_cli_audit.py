"""``exhibit audit search`` as scripts use it (--json, exit codes), and ``audit verify``
recording the full verification the audit desk shows; SQLite and PostgreSQL."""

from __future__ import annotations

from sqlmodel import select

from storage.audit_health import FULL
from storage.db import Database
from storage.models import LedgerStatus
from tests.exhibit.test_cli import Cli, cli  # noqa: F401 - the fixture


def test_audit_search_filters_pages_and_refuses_an_unknown_report(cli: Cli) -> None:  # noqa: F811
    for ref in ("RTC/2026/0001", "RTC/2026/0002", "RTC/2026/0003"):
        cli.json("reports", "create", ref, "--kind", "rtc")
    link = cli.json("links", "create", "RTC/2026/0002")

    found = cli.json("audit", "search", "--report", "RTC/2026/0002")
    assert [e["action"] for e in found["events"]] == ["link.created", "report.created"]  # newest first
    assert {e["report"] for e in found["events"]} == {"RTC/2026/0002"}
    assert found["filters"] == {"report": "RTC/2026/0002"}
    assert found["events"][0]["detail"]["link_id"] == link["id"]

    actor = found["events"][0]["actor"]
    assert actor.startswith("cli")
    mine = cli.json("audit", "search", "--user", actor, "--action", "report.*", "--limit", "2")
    assert [e["action"] for e in mine["events"]] == ["report.created", "report.created"]
    assert mine["older"] is not None and mine["newer"] is None
    rest = cli.json("audit", "search", "--user", actor, "--action", "report.*", "--before", str(mine["older"]))
    assert [e["report"] for e in rest["events"]] == ["RTC/2026/0001"] and rest["older"] is None

    assert cli.json("audit", "search", "--since", "2999-01-01")["events"] == []
    unknown = cli.json("audit", "search", "--report", "RTC/2026/9999", code=2)
    assert unknown["error"]["code"] == "ERR_REPORT_NOT_FOUND"
    bad = cli.json("audit", "search", "--since", "last tuesday", code=2)
    assert bad["error"]["code"] == "ERR_TIME_INVALID"
    human = cli.run("audit", "search", "--report", "RTC/2026/0002", real=True)
    assert human.returncode == 0 and "link.created" in human.stdout and "RTC/2026/0002" in human.stdout


def test_audit_verify_records_the_full_verification(cli: Cli) -> None:  # noqa: F811
    cli.json("reports", "create", "R-1", "--kind", "other")
    db = Database(cli.env["EXHIBIT_DATABASE_URL"])
    try:
        with db.read() as s:
            assert s.get(LedgerStatus, FULL) is None
        assert cli.json("audit", "verify")["ok"] is True
        with db.read() as s:
            row = s.exec(select(LedgerStatus).where(LedgerStatus.name == FULL)).one()
        assert row.ok and row.head_seq == 1 and "exhibit audit verify" in row.destination
    finally:
        db.dispose()
