"""The README is part of the product: every setting is documented, the two commands lead."""

from __future__ import annotations

import re
from pathlib import Path

from storage.settings import SETTINGS, Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme() -> None:
    missing = [s.env for s in SETTINGS if f"`{s.env}`" not in README]
    assert missing == []


def test_every_exhibit_variable_read_anywhere_is_a_declared_setting() -> None:
    declared = {s.env for s in SETTINGS}
    used: set[str] = set()
    for package in ("exhibit", "upload_api", "reviewer_ui", "processing", "storage"):
        for path in (ROOT / package).rglob("*.py"):
            used |= set(re.findall(r"EXHIBIT_[A-Z0-9_]+", path.read_text()))
    assert used - declared == set()


def test_quick_start_opens_with_the_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1]
    commands = re.findall(r"^\s*(make \w+)", quick, flags=re.M)
    assert commands[:2] == ["make run", "make test"]


def test_settings_read_from_environment() -> None:
    s = Settings.from_env({"EXHIBIT_DATA_DIR": "/srv/x", "EXHIBIT_LINK_MAX_BYTES": "2G", "EXHIBIT_PORT": "9000"})
    assert s.database_url == "sqlite:////srv/x/exhibit.db"
    assert s.storage_url == "file:///srv/x/blobs"
    assert s.link_max_bytes == 2 << 30
    assert s.port == 9000
