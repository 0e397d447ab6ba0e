"""The `exhibit` command line as scripts use it: real processes, --json output, exit codes,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from storage.db import Database
from tests.fixtures.ports import closed_port
from tests.fixtures.tamper import tamper

EXHIBIT = [str(Path(sys.executable).parent / "exhibit")]


class Cli:
    """Runs the CLI's ``main`` in this process (fast), or as a real process (``real=True``)
    where exit codes and the console script matter."""

    def __init__(self, data_dir: Path, db_url: str, monkeypatch: pytest.MonkeyPatch | None = None) -> None:
        self.env = {**os.environ, "EXHIBIT_DATA_DIR": str(data_dir), "EXHIBIT_DATABASE_URL": db_url,
                    "EXHIBIT_PUBLIC_URL": "https://evidence.example.police.uk"}
        self.monkeypatch = monkeypatch

    def run(self, *args: str, stdin: str | None = None, real: bool = False) -> subprocess.CompletedProcess[str]:
        if real or self.monkeypatch is None:
            return subprocess.run([*EXHIBIT, *args], env=self.env, input=stdin, capture_output=True, text=True,
                                  timeout=120, check=False)
        from exhibit.cli import main

        out, err = io.StringIO(), io.StringIO()
        with self.monkeypatch.context() as m:
            for k, v in self.env.items():
                if k.startswith("EXHIBIT_"):
                    m.setenv(k, v)
            m.setattr(sys, "stdin", io.StringIO(stdin or ""))
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(list(args))
        return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())

    def json(self, *args: str, stdin: str | None = None, code: int = 0) -> Any:
        proc = self.run(*args, "--json", stdin=stdin)
        assert proc.returncode == code, proc.stdout + proc.stderr
        return json.loads(proc.stdout)


@pytest.fixture
def cli(tmp_path: Path, db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch) -> Cli:
    # ``db`` makes ``db_url`` a copy of the session's migrated template (tests/fixtures/
    # database.py) instead of an empty database that each test migrated in full; `db upgrade`
    # still runs (a no-op at head). Upgrading an empty database through the CLI stays tested
    # in test_cli_no_database.py and tests/storage/test_db_roles.py.
    c = Cli(tmp_path / "data", db_url, monkeypatch)
    assert c.json("db", "upgrade")["ok"] is True
    return c


def test_commands_refuse_an_unmigrated_database(tmp_path: Path) -> None:
    import sqlite3

    sqlite3.connect(tmp_path / "fresh.db").close()  # a file, never migrated (none at all: ERR_NO_DATABASE)
    c = Cli(tmp_path, f"sqlite:///{tmp_path / 'fresh.db'}")
    out = c.json("reports", "create", "RTC-1", "--kind", "rtc", code=2)
    assert out["error"]["code"] == "ERR_DB_NOT_MIGRATED"


def test_report_link_and_revoke(cli: Cli) -> None:
    report = cli.json("reports", "create", "RTC/2026/0042", "--kind", "rtc", "--title", "Collision, A38")
    assert report["reference"] == "RTC/2026/0042"
    link = cli.json("links", "create", "RTC/2026/0042", "--expires", "48h", "--max-files", "10", "--max-bytes", "2G")
    assert link["url"].startswith("https://evidence.example.police.uk/u/")
    token = link["url"].rsplit("/", 1)[1]
    assert len(token) >= 43  # 256 bits, url-safe base64
    assert link["max_bytes"] == 2 << 30
    assert link["expires_at"].endswith("Z")
    assert cli.json("links", "revoke", link["id"])["revoked_at"]
    # The token itself is nowhere in the database: only its hash.
    db = Database(cli.env["EXHIBIT_DATABASE_URL"])
    try:
        with db.read() as s:
            dumped = json.dumps([list(r) for r in s.exec(text("SELECT * FROM upload_link")).all()], default=str)  # type: ignore[call-overload]
            events = json.dumps([list(r) for r in s.exec(text("SELECT * FROM custody_event")).all()], default=str)  # type: ignore[call-overload]
    finally:
        db.dispose()
    assert token not in dumped and token not in events


def test_domain_errors_are_clear_and_exit_2(cli: Cli) -> None:
    cli.json("reports", "create", "CR-1", "--kind", "crime")
    dup = cli.json("reports", "create", "CR-1", "--kind", "crime", code=2)
    assert dup["error"]["code"] == "ERR_REPORT_EXISTS"
    missing = cli.json("links", "create", "NOPE", code=2)
    assert missing["error"]["code"] == "ERR_REPORT_NOT_FOUND"
    human = cli.run("links", "create", "NOPE", real=True)
    assert human.returncode == 2 and "no report NOPE" in human.stdout + human.stderr


def test_users_add_with_password_from_stdin(cli: Cli) -> None:
    user = cli.json("users", "add", "PC.Smith@force.example", "--role", "officer", "--password-stdin",
                    stdin="correct horse battery staple\n")
    assert user["email"] == "pc.smith@force.example" and user["has_password"] is True
    partner = cli.json("users", "add", "lawyer@cps.example", "--role", "partner", "--org", "CPS")
    assert partner["org"] == "CPS"
    short = cli.json("users", "add", "x@y.example", "--role", "admin", "--password-stdin", stdin="short\n", code=2)
    assert short["error"]["code"] == "ERR_PASSWORD_SHORT"


def test_items_list_empty_report(cli: Cli) -> None:
    cli.json("reports", "create", "ASB-7", "--kind", "asb")
    assert cli.json("items", "list", "ASB-7") == []
    assert cli.json("items", "show", "0" * 32, code=2)["error"]["code"] == "ERR_ITEM_NOT_FOUND"


def test_audit_verify_and_checkpoint(cli: Cli, tmp_path: Path) -> None:
    for i in range(3):
        cli.json("reports", "create", f"R-{i}", "--kind", "other")
    ok = cli.json("audit", "verify")
    assert ok["ok"] is True and ok["count"] == 3
    cp = tmp_path / "cp.json"
    written = cli.json("audit", "checkpoint", "--out", str(cp))
    assert written["checkpoint"]["seq"] == 3
    cli.env["EXHIBIT_LEDGER_PUBLIC_KEY"] = written["public_key"]
    assert cli.json("audit", "verify", "--checkpoint", str(cp))["ok"] is True
    del cli.env["EXHIBIT_LEDGER_PUBLIC_KEY"]

    tamper(cli.env["EXHIBIT_DATABASE_URL"], "DELETE FROM custody_event WHERE seq = 3")
    # The chain alone is intact (a cut tail), the checkpoint shows the cut.
    assert cli.json("audit", "verify")["ok"] is True
    key = written["public_key"]
    broken = cli.json("audit", "verify", "--checkpoint", str(cp), "--public-key", key, code=1)
    assert broken["ok"] is False and broken["first_bad_seq"] == 3
    # The installed console script, as a cron job or a shell script would call it.
    human = cli.run("audit", "verify", "--checkpoint", str(cp), "--public-key", key, real=True)
    assert human.returncode == 1 and "seq 3" in human.stdout


def test_api_key_is_shown_once_and_stored_hashed(cli: Cli) -> None:
    created = cli.json("apikeys", "add", "Force online forms")
    assert len(created["key"]) >= 40
    listed = cli.json("apikeys", "list")
    assert [k["name"] for k in listed] == ["Force online forms"]
    assert created["key"] not in json.dumps(listed)
    db = Database(cli.env["EXHIBIT_DATABASE_URL"])
    try:
        with db.read() as s:
            dumped = json.dumps([list(r) for r in s.exec(text("SELECT * FROM api_key")).all()], default=str)  # type: ignore[call-overload]
    finally:
        db.dispose()
    assert created["key"] not in dumped
    assert cli.json("apikeys", "revoke", created["id"])["revoked"] is True


def test_api_key_created_for_a_unit(cli: Cli) -> None:
    created = cli.json("apikeys", "create", "North forms", "--unit", "North")
    assert created["unit"] == "North" and created["key"].startswith("exk_")
    (listed,) = cli.json("apikeys", "list")
    assert (listed["id"], listed["unit"]) == (created["id"], "North")


def _tamper(url: str, sql: str) -> None:
    tamper(url, sql)


def test_audit_verify_names_the_first_bad_seq_of_an_edited_chain(cli: Cli) -> None:
    for i in range(4):
        cli.json("reports", "create", f"E-{i}", "--kind", "other")
    _tamper(cli.env["EXHIBIT_DATABASE_URL"], "UPDATE custody_event SET actor = 'forger' WHERE seq = 2")
    broken = cli.json("audit", "verify", code=1)
    assert broken["ok"] is False and broken["first_bad_seq"] == 2
    human = cli.run("audit", "verify", real=True)
    assert human.returncode == 1 and "seq 2" in human.stdout


def test_audit_checkpoint_refuses_to_sign_a_broken_ledger(cli: Cli, tmp_path: Path) -> None:
    for i in range(3):
        cli.json("reports", "create", f"B-{i}", "--kind", "other")
    _tamper(cli.env["EXHIBIT_DATABASE_URL"], "UPDATE custody_event SET actor = 'forger' WHERE seq = 1")
    cp = tmp_path / "cp.json"
    refused = cli.json("audit", "checkpoint", "--out", str(cp), code=1)
    assert refused["ok"] is False and refused["first_bad_seq"] == 1
    assert not cp.exists()


def test_audit_verify_pins_the_checkpoint_signer(cli: Cli, tmp_path: Path) -> None:
    from storage import ledger

    cli.json("reports", "create", "P-1", "--kind", "other")
    (tmp_path / "checkpoints").mkdir()
    cp = tmp_path / "checkpoints" / "cp.json"
    document = cli.json("audit", "checkpoint", "--out", str(cp))
    assert [p.name for p in cp.parent.iterdir()] == ["cp.json"]  # no temp file left behind
    # The signing key sits in this installation's data directory, but it is never the
    # trust anchor: whoever can write there could have put their own key (AU-06).
    unpinned = cli.json("audit", "verify", "--checkpoint", str(cp), code=2)
    assert unpinned["error"]["code"] == "ERR_CHECKPOINT_UNPINNED"
    cli.env["EXHIBIT_LEDGER_PUBLIC_KEY"] = document["public_key"]
    ok = cli.json("audit", "verify", "--checkpoint", str(cp))
    assert ok["ok"] is True and ok["signer"] == {"public_key": document["public_key"], "pinned": True}
    # An auditor's machine without the signing key pins the key it was given...
    elsewhere = Cli(tmp_path / "auditor", cli.env["EXHIBIT_DATABASE_URL"], cli.monkeypatch)
    pinned = elsewhere.json("audit", "verify", "--checkpoint", str(cp), "--public-key", document["public_key"])
    assert pinned["ok"] is True and pinned["signer"]["pinned"] is True
    # ...and a checkpoint re-signed by someone else's key is refused...
    other = ledger.load_or_create_signing_key(tmp_path / "other.pem")
    body = document["checkpoint"]
    forged = {**document, "public_key": ledger.public_key_b64(other),
              "signature": base64.b64encode(other.sign(ledger.canonical_json(body))).decode()}
    fake = tmp_path / "forged.json"
    fake.write_text(json.dumps(forged))
    refused = elsewhere.json("audit", "verify", "--checkpoint", str(fake), "--public-key", document["public_key"],
                             code=1)
    assert refused["ok"] is False and "unexpected key" in refused["reason"]
    # ...as is any checkpoint when no key is pinned: its own key proves nothing.
    assert elsewhere.json("audit", "verify", "--checkpoint", str(fake), code=2)["error"]["code"] == \
        "ERR_CHECKPOINT_UNPINNED"
    human = elsewhere.run("audit", "verify", "--checkpoint", str(fake), real=True)
    assert human.returncode == 2 and "unpinned" in human.stdout + human.stderr


def test_audit_verify_without_a_checkpoint_file_checks_the_newest_stored_checkpoint_the_pinned_key_signed(
        cli: Cli, tmp_path: Path) -> None:
    from storage import ledger

    for i in range(5):
        cli.json("reports", "create", f"S-{i}", "--kind", "other")
    document = cli.json("audit", "checkpoint", "--out", str(tmp_path / "cp.json"))
    assert document["checkpoint"]["seq"] == 5
    # A checkpoint signed by another key, stored later and vouching for less, is passed over.
    db = Database(cli.env["EXHIBIT_DATABASE_URL"])
    try:
        ledger.make_checkpoint(db, ledger.load_or_create_signing_key(tmp_path / "other.pem"))
    finally:
        db.dispose()
    cli.env["EXHIBIT_LEDGER_PUBLIC_KEY"] = document["public_key"]
    ok = cli.json("audit", "verify")
    assert ok["ok"] is True and ok["checkpoint_seq"] == 5 and ok["checkpoint_source"] == "database"
    # Cut the tail: the chain alone is still whole, the stored checkpoint shows the cut.
    tamper(cli.env["EXHIBIT_DATABASE_URL"], "DELETE FROM custody_event WHERE seq >= 4")
    broken = cli.json("audit", "verify", code=1)
    assert broken["ok"] is False and broken["first_bad_seq"] == 4
    human = cli.run("audit", "verify", real=True)
    assert human.returncode == 1 and "seq 4" in human.stdout
    # A stored checkpoint forged by someone without the key does not count either.
    tamper(cli.env["EXHIBIT_DATABASE_URL"], "UPDATE checkpoint SET seq = 3, count = 3")
    assert cli.json("audit", "verify")["checkpoint_source"] is None


def test_serve_refuses_a_schema_older_than_its_code(tmp_path: Path, db_url: str) -> None:
    from storage.migrate import upgrade

    upgrade(db_url, "0006")
    c = Cli(tmp_path / "data", db_url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        c.env["EXHIBIT_PORT"] = str(s.getsockname()[1])
    # Before, serve migrated on start (as whatever role it ran as) and served; now it
    # stops at once with a plain instruction and changes nothing.
    proc = c.run("serve", "--no-worker", real=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "run `exhibit db upgrade`" in proc.stdout + proc.stderr
    db = Database(db_url)
    try:
        with db.read() as s:
            assert s.exec(text("SELECT version_num FROM alembic_version")).scalar_one() == "0006"  # type: ignore[call-overload]
    finally:
        db.dispose()


def test_audit_verify_with_an_unreadable_checkpoint_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    from storage import ledger

    cli.env["EXHIBIT_LEDGER_PUBLIC_KEY"] = ledger.public_key_b64(ledger.load_or_create_signing_key(tmp_path / "k.pem"))
    missing = cli.json("audit", "verify", "--checkpoint", str(tmp_path / "nope.json"), code=2)
    assert missing["error"]["code"] == "ERR_FILE_UNREADABLE"
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert cli.json("audit", "verify", "--checkpoint", str(garbage), code=2)["error"]["code"] == "ERR_FILE_UNREADABLE"


def test_a_database_that_cannot_be_reached_is_exit_3_not_a_broken_ledger(tmp_path: Path) -> None:
    # Exit 1 means "the ledger does not verify"; a monitoring job must not raise a
    # tampering alarm because the database was down.
    # (A database that is simply not there is exit 2, ERR_NO_DATABASE: test_cli_users.py.)
    port = closed_port()  # a port nothing listens on: the server is down
    c = Cli(tmp_path / "data", f"postgresql+psycopg://exhibit@127.0.0.1:{port}/exhibit")
    proc = c.run("audit", "verify", "--json", real=True)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] is False and out["error"]["code"] == "ERR_INTERNAL"


def test_an_invalid_setting_is_a_usage_error(tmp_path: Path) -> None:
    c = Cli(tmp_path / "data", f"sqlite:///{tmp_path / 'exhibit.db'}")
    c.env["EXHIBIT_JOB_LEASE_SECONDS"] = "0"
    proc = c.run("audit", "verify", "--json", real=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["error"]["code"] == "ERR_SETTING_INVALID" and "EXHIBIT_JOB_LEASE_SECONDS" in out["error"]["message"]


def test_staff_and_partners_never_share_an_organisation(cli: Cli) -> None:
    cli.json("users", "add", "lawyer@cps.example", "--role", "partner", "--org", "CPS")
    mixed = cli.json("users", "add", "pc.jones@force.example", "--role", "officer", "--org", "CPS", code=2)
    assert mixed["error"]["code"] == "ERR_ORG_KIND_MISMATCH"
    cli.json("users", "add", "pc.brown@force.example", "--role", "officer", "--org", "Force")
    partner = cli.json("users", "add", "clerk@council.example", "--role", "partner", "--org", "Force", code=2)
    assert partner["error"]["code"] == "ERR_ORG_KIND_MISMATCH"
