"""A command that reads never creates a database (issue 15 item 2): with none where it
looks, it says where it looked and exits 2, leaving nothing behind; and Alembic's INFO
narration never reaches the terminal of `exhibit db upgrade` or any other command."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.exhibit.test_cli import Cli

READING = [("items", "list", "RTC-1"), ("audit", "verify")]


@pytest.mark.parametrize("argv", READING, ids=lambda a: " ".join(a[:2]))
def test_a_reading_command_on_a_missing_sqlite_database_creates_nothing(tmp_path: Path, argv: tuple[str, ...]) -> None:
    data_dir = tmp_path / "typo"  # EXHIBIT_DATA_DIR pointing where there is no installation
    cli = Cli(data_dir, "")
    del cli.env["EXHIBIT_DATABASE_URL"]  # the default: exhibit.db in the data directory
    proc = cli.run(*argv, "--json", real=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert error["code"] == "ERR_NO_DATABASE"
    assert str(data_dir.resolve() / "exhibit.db") in error["message"]  # says where it looked
    assert not data_dir.exists()  # neither the file nor its directory was made
    human = cli.run(*argv, real=True)
    assert human.returncode == 2 and f"no database at {data_dir.resolve() / 'exhibit.db'}" in human.stdout


def test_a_missing_postgresql_database_is_named_and_exits_2(tmp_path: Path, db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        missing = tmp_path / "elsewhere" / "exhibit.db"
        url = f"sqlite:///{missing}"
    else:
        url = db_url.rsplit("/", 1)[0] + "/no_such_exhibit_database"
    proc = Cli(tmp_path / "data", url).run("apikeys", "list", "--json", real=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert error["code"] == "ERR_NO_DATABASE"
    assert ("no_such_exhibit_database" if url.startswith("postgresql") else str(missing)) in error["message"]
    if not url.startswith("postgresql"):
        assert not missing.parent.exists()


def test_an_unmigrated_database_is_still_refused_with_the_instruction(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # there, but never migrated
    out = json.loads(Cli(tmp_path, f"sqlite:///{path}").run("apikeys", "list", "--json", real=True).stdout)
    assert out["error"]["code"] == "ERR_DB_NOT_MIGRATED" and "exhibit db upgrade" in out["error"]["message"]


def test_db_upgrade_and_later_commands_print_no_alembic_narration(tmp_path: Path, db_url: str) -> None:
    cli = Cli(tmp_path / "data", db_url)
    upgraded = cli.run("db", "upgrade", real=True)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.startswith("database upgraded to ")
    assert upgraded.stderr == ""  # no "Context impl", "Running upgrade", "setup plugin" lines
    listed = cli.run("apikeys", "list", real=True)
    assert listed.returncode == 0 and listed.stderr == ""
    assert "alembic" not in listed.stdout + upgraded.stdout
    # Asked for, the detail is still there.
    cli.env["EXHIBIT_LOG_LEVEL"] = "DEBUG"
    again = cli.run("db", "upgrade", real=True)
    assert again.returncode == 0 and "alembic" in again.stderr
