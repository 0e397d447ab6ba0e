"""i15 item 5, the class: every staff page prints a time through the one filter
(``{{ at|when }}``, reviewer_ui/display.py): the force's zone (EXHIBIT_TIME_ZONE), the
UTC instant on hover. Before, the report page, the share table, the report list, "My
reports", the notes page, the audit desk and the legal holds printed UTC text of their
own ("2026-12-03 10:04", "(UTC)").

Two checks: the templates hold no other way to print a time, and every staff page,
rendered with data that has times on it, shows no ISO-like time in its visible text."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from sqlmodel import col, select

from storage.models import Share
from tests.fixtures.casework import Casework

TEMPLATES = Path(__file__).resolve().parents[2] / "reviewer_ui" / "templates"
# Ways a template printed a time before the one filter (each one was on main).
OTHER_WAYS = {
    "strftime with a time of day": re.compile(r"strftime\([^)]*%H"),
    "the ledger's UTC text": re.compile(r"fmt_time\("),
    "an ISO string cut down": re.compile(r"\[:16\]|replace\('T'"),
}
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d")


def test_no_template_prints_a_time_another_way() -> None:
    found = []
    for path in sorted(TEMPLATES.glob("*.html")):
        text = path.read_text()
        for what, pattern in OTHER_WAYS.items():
            found += [f"{path.name}: {what}: {m.group(0)}" for m in pattern.finditer(text)]
    assert found == []


def _visible(page: str) -> str:
    """The text a reader sees: no scripts, no tags (so no attributes: the UTC instant in a
    ``<time>``'s ``datetime`` and ``title`` is not text, nor a form field's value)."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    # Not a time the page prints: the recorded detail of a custody event, verbatim as
    # the ledger keeps it (UTC, like exports and logs), and a search field's hint, whose
    # example is typed in UTC.
    page = re.sub(r'<span class="kv">.*?</span>|<p class="hint"[^>]*>.*?</p>', " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


@pytest.fixture
def busy(casework: Casework) -> dict[str, object]:
    """A report with times on every part of it: an item, an upload link, a share the
    partner acknowledged and looked at, a note, a legal hold; the officer has seen it."""
    casework.ctx.settings = casework.settings.replace(time_zone="America/New_York")
    admin_user = casework.user("admin")
    officer_user = casework.user("officer")
    partner_user = casework.user("partner", email="lawyer@cps.test", org="CPS North")
    report = casework.report(officer_user)
    item = casework.item(report).item
    officer = casework.client(officer_user)
    admin = casework.client(admin_user)
    assert officer.post(f"/reports/{report.id}/links", {"expires": "7d", "max_files": "5",
                                                        "max_bytes": "100 MiB"}).status_code in (200, 303)
    assert officer.post(f"/items/{item.id}/shares", {"partner": f"org:{partner_user.org_id}", "days": "10",
                                                      "allow_download": "yes"}).status_code == 303
    with casework.db.read() as s:
        share = s.exec(select(Share).where(col(Share.item_id) == item.id)).one()
    partner = casework.client(partner_user)
    assert partner.get(f"/items/{item.id}").status_code == 200
    assert partner.post(f"/shares/{share.id}/acknowledge", {"item": item.id}).status_code == 303
    assert officer.post(f"/items/{item.id}/notes", {"body": "Plate visible at 00:12"}).status_code == 303
    assert admin.post(f"/reports/{report.id}/holds", {"reason": "IOPC referral"}).status_code == 303
    assert officer.get(f"/reports/{report.id}").status_code == 200
    return {"admin": admin, "officer": officer, "partner": partner, "report": report.id, "item": item.id,
            "auditor": casework.client(casework.user("auditor"))}


PAGES = [
    ("officer", "/reports"), ("officer", "/my-reports"), ("officer", "/reports/{report}"),
    ("officer", "/items/{item}"), ("officer", "/items/{item}/notes"), ("admin", "/admin/users"),
    ("admin", "/admin/links"), ("admin", "/admin/retention"), ("admin", "/reports/{report}"),
    ("auditor", "/audit?item_id={item}"), ("partner", "/items/{item}"),
]


@pytest.mark.parametrize(("who", "path"), PAGES)
def test_every_staff_page_shows_times_in_the_forces_zone(busy: dict[str, object], who: str, path: str) -> None:
    client = busy[who]
    url = path.format(report=busy["report"], item=busy["item"])
    page = client.get(url)  # type: ignore[attr-defined]
    assert page.status_code == 200, (url, page.status_code)
    text = _visible(page.text)
    assert ISO_TIME.findall(text) == [], url
    assert not re.search(r"\d\d:\d\d(:\d\d)? UTC\b", text), url
    # Every time on it is in the force's zone, in a <time> with the UTC instant on hover.
    times = re.findall(r'<time datetime="[^"]+Z" title="[^"]+ UTC">([^<]+)</time>', page.text)
    assert all(t.endswith((" EST", " EDT")) for t in times), (url, times)
    assert times or path == "/admin/users", url  # the accounts table has no times
