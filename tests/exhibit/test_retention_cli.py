"""``exhibit retention set|due|run`` and ``exhibit hold add|remove|list`` as an operator
uses them (DESIGN.md section 5), on SQLite and PostgreSQL: --json output, exit codes,
and the evidence really goes (or stays)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import anyio
import pytest

from storage.blobs import BlobNotFound, put_bytes, read_all
from storage.blobs.filesystem import FilesystemBlobStore
from storage.db import Database
from storage.items import create_item
from storage.reports import get_report_by_reference
from tests.exhibit.test_cli import Cli


@pytest.fixture
def cli(tmp_path: Path, db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch) -> Cli:
    # ``db``: start from the migrated template (see tests/exhibit/test_cli.py's ``cli``).
    c = Cli(tmp_path / "data", db_url, monkeypatch)
    assert c.json("db", "upgrade")["ok"] is True
    return c


def test_set_due_hold_and_run_from_the_command_line(cli: Cli, db_url: str, tmp_path: Path) -> None:
    cli.json("reports", "create", "CRIME/77", "--kind", "crime")
    store = FilesystemBlobStore(tmp_path / "data" / "blobs")
    data = os.urandom(5000)
    key = anyio.run(put_bytes, store, data, "originals")
    db = Database(db_url)
    try:
        with db.write() as s:
            report = get_report_by_reference(s, "CRIME/77")
            item = create_item(db, s, report_id=report.id, blob_key=key, size=len(data),
                               sha256=hashlib.sha256(data).hexdigest(), actor="test")
            item.state = "ready"
            item_id = item.id
    finally:
        db.dispose()

    assert cli.json("retention", "due") == []
    in_six_years = cli.json("retention", "due", "--days", str(6 * 366))
    assert [r["item_id"] for r in in_six_years] == [item_id] and "crime=6y" in in_six_years[0]["rule"]

    assert cli.run("hold", "add", "CRIME/77", "--reason", " ", "--json").returncode == 2  # a reason is required
    placed = cli.json("hold", "add", "CRIME/77", "--reason", "judicial review")
    assert placed["holds"][0]["reason"] == "judicial review" and placed["holds"][0]["item_id"] is None
    assert [h["report"] for h in cli.json("hold", "list")] == ["CRIME/77"]

    dated = cli.json("retention", "set", "CRIME/77", "--until", "2001-01-01", "--reason", "court order 12/34")
    assert dated["due_now"] is True and dated["retain_until"].startswith("2001-01-01")
    due = cli.json("retention", "due")
    assert [(r["item_id"], r["held"]) for r in due] == [(item_id, True)]
    assert "court order 12/34" in due[0]["rule"]

    held = cli.json("retention", "run")
    assert held["disposed"] == [] and held["held"] == [item_id]
    assert anyio.run(read_all, store, key) == data

    removed = cli.json("hold", "remove", "CRIME/77", "--reason", "review concluded")
    assert removed["holds"][0]["release_reason"] == "review concluded"
    again = cli.run("hold", "remove", "CRIME/77", "--reason", "twice", "--json")
    assert again.returncode == 2 and "ERR_NO_HOLD" in again.stdout
    assert cli.json("hold", "list") == []
    assert [h["released_at"] is not None for h in cli.json("hold", "list", "--all")] == [True]

    dry = cli.json("retention", "run", "--dry-run")
    assert [d["item_id"] for d in dry["disposed"]] == [item_id]
    assert anyio.run(read_all, store, key) == data
    done = cli.json("retention", "run")
    assert [d["item_id"] for d in done["disposed"]] == [item_id]
    with pytest.raises(BlobNotFound):
        anyio.run(read_all, store, key)
    shown = cli.json("items", "show", item_id)
    assert shown["state"] == "purged" and shown["sha256"] == hashlib.sha256(data).hexdigest()
    # An item id works as a target too; a purged item cannot be held.
    refused = cli.run("hold", "add", item_id, "--reason", "too late", "--json")
    assert refused.returncode == 2 and "ERR_ITEM_PURGED" in refused.stdout
    assert cli.run("retention", "set", "CRIME/77", "--until", "2001-01-01T00:00", "--reason", "x").returncode == 2
