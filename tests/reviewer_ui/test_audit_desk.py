"""The audit desk (issue 15 item 3): who may open it, what a search finds, the keyset
pages, the exports (and that each is a custody event), the chain's health."""

from __future__ import annotations

import csv
import html
import io
import json
import re

import pytest

from storage import audit_health, ledger
from tests.fixtures.casework import Casework


@pytest.mark.parametrize("role", ["officer", "partner"])
def test_only_admins_and_auditors_reach_the_desk_others_get_the_uniform_404(casework: Casework, role: str) -> None:
    someone = casework.client(casework.user(role))
    denied_before = len(casework.events("access.denied"))
    assert someone.get("/audit").status_code == 404
    assert someone.get("/audit?item=x&seeing=1").status_code == 404
    assert someone.post("/audit/export", {"format": "csv"}).status_code == 404
    assert len(casework.events("access.denied")) == denied_before + 3
    assert casework.events("audit.export") == [] and casework.events("audit.searched") == []
    assert 'href="/audit"' not in someone.get("/reports").text
    for allowed in ("auditor", "admin"):
        page = casework.client(casework.user(allowed)).get("/audit")
        assert page.status_code == 200 and 'href="/audit" aria-current="page"' in page.text


def _watched(casework: Casework) -> tuple[str, str, str]:
    """An officer opens an item; another item nobody opens. -> (officer email, item id, other id)."""
    officer_user = casework.user("officer", email="pc.watcher@force.test")
    report = casework.report(officer_user, reference="RTC/2026/0777")
    item = casework.item(report).item
    other = casework.item(report).item
    officer = casework.client(officer_user)
    assert officer.get(f"/items/{item.id}").status_code == 200
    return officer_user.email, item.id, other.id


def test_who_saw_this_item_in_one_click_from_the_item_page(casework: Casework) -> None:
    email, item_id, other_id = _watched(casework)
    auditor = casework.client(casework.user("auditor", email="auditor@force.test"))
    item_page = auditor.get(f"/items/{item_id}").text
    link = re.search(r'<a href="(/audit\?item=[^"]+)">Who saw this item</a>', item_page)
    assert link, "the item page links to the desk"
    page = auditor.get(html.unescape(link.group(1)))
    assert page.status_code == 200
    rows = re.findall(r"<tr>(.*?)</tr>", page.text, re.S)[1:]
    seen = {(re.search(r'class="audit-actor">([^<]+)', r).group(1), re.search(r"<td>([a-z_.]+)</td>", r).group(1))  # type: ignore[union-attr]
            for r in rows}
    # The officer's view and the auditor's own view of the item page, nothing else.
    assert seen == {(email, "item.viewed"), ("auditor@force.test", "item.viewed")}
    assert "RTC/2026/0777" in page.text
    assert "No event matches this search." in auditor.get(f"/audit?item={other_id}&seeing=1").text  # nobody opened it
    # "What did this person see" from the officer's name.
    person = re.search(r'<a href="([^"]+)" class="audit-actor">' + re.escape(email), page.text)
    assert person
    theirs = auditor.get(html.unescape(person.group(1))).text
    assert theirs.count('class="audit-actor"') == 1 and item_id[:8] in theirs
    # Reading the ledger is itself recorded, with the filters.
    searched = casework.events("audit.searched")
    assert searched[-1].actor == "auditor@force.test"
    assert searched[-1].detail["filters"]["actor"] == email  # type: ignore[index]
    assert searched[0].detail["filters"] == {"item_id": item_id, "actions": list(  # type: ignore[index]
        ("item.viewed", "media.stream", "item.original_downloaded", "export.created"))}


def test_csv_and_json_exports_hold_every_match_and_are_custody_events(casework: Casework) -> None:
    email, item_id, _other = _watched(casework)
    with casework.db.write() as s:
        # A value a spreadsheet would run as a formula (text from outside reaches the ledger).
        ledger.append(casework.db, s, actor="=HYPERLINK(\"http://evil\")", action="item.viewed", item_id=item_id)
    auditor = casework.client(casework.user("auditor"))
    r = auditor.post("/audit/export", {"item": item_id, "seeing": "1", "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"] and r.headers["cache-control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["actor"], row["action"]) for row in rows] == [
        ("'=HYPERLINK(\"http://evil\")", "item.viewed"), (email, "item.viewed")]
    assert {row["item_id"] for row in rows} == {item_id} and rows[1]["report"] == "RTC/2026/0777"
    exported = casework.events("audit.export")
    assert len(exported) == 1 and exported[0].detail == {  # the filters and the format
        "filters": {"item_id": item_id, "actions": ["item.viewed", "media.stream", "item.original_downloaded",
                                                    "export.created"]}, "format": "csv"}
    as_json = auditor.post("/audit/export", {"user": email, "format": "json"})
    doc = json.loads(as_json.text)
    assert doc["filters"] == {"actor": email}
    assert [e["action"] for e in doc["events"]] == ["item.viewed"] and doc["events"][0]["item_id"] == item_id
    assert len(casework.events("audit.export")) == 2
    # Without the CSRF token (a page on another site) nothing is exported or recorded.
    forged = auditor.http.post("/audit/export", data={"format": "csv"})
    assert forged.status_code == 403 and len(casework.events("audit.export")) == 2


def test_keyset_pages_older_and_newer(casework: Casework) -> None:
    with casework.db.write() as s:
        for n in range(60):
            ledger.append(casework.db, s, actor="busy@force.test", action="report.viewed", detail={"n": n})
    auditor = casework.client(casework.user("auditor"))
    first = auditor.get("/audit?user=busy%40force.test").text
    assert first.count('class="audit-actor"') == 50 and "Newer events" not in first
    older = re.search(r'<a href="([^"]+)" rel="next">Older events</a>', first)
    assert older
    second = auditor.get(html.unescape(older.group(1))).text
    assert second.count('class="audit-actor"') == 10 and "Older events" not in second
    assert "n: 0" in second and "n: 59" not in second
    newer = re.search(r'<a href="([^"]+)" rel="prev">Newer events</a>', second)
    assert newer
    back = auditor.get(html.unescape(newer.group(1))).text
    assert back.count('class="audit-actor"') == 50 and "n: 59" in back and "n: 9<" not in back


def test_a_search_that_cannot_match_says_why(casework: Casework) -> None:
    auditor = casework.client(casework.user("auditor"))
    r = auditor.get("/audit?report=NOPE%2F1")
    assert r.status_code == 400
    assert "<title>Error: " in r.text and 'href="#audit-report"' in r.text and 'aria-invalid="true"' in r.text
    assert auditor.get("/audit?since=soon").status_code == 400
    assert auditor.post("/audit/export", {"report": "NOPE/1"}).status_code == 400
    assert casework.events("audit.export") == []


def test_chain_health_says_never_then_what_a_full_verification_found(casework: Casework) -> None:
    auditor = casework.client(casework.user("auditor"))
    page = auditor.get("/audit").text
    assert re.search(r"Last full verification</dt><dd>\s*never", page)
    assert re.search(r"Last checkpoint</dt><dd>\s*never", page)
    result = ledger.verify(casework.db)
    audit_health.record_full_verification(casework.db, result, by="exhibit audit verify (cli:test)")
    key = ledger.load_or_create_signing_key(casework.settings.data_dir / "ledger-test.key")
    ledger.sign_checkpoint(casework.db, key, result)
    page = auditor.get("/audit").text
    assert re.search(r"Last full verification</dt><dd>\s*Intact", page) and "cli:test" in page
    assert f"event {result.head_seq}, signed" in page
