"""Search and filter (issue 15 item 1): reports by reference, kind, unit, owner and date;
a report's evidence by state, triage, tag, media type and capture time, with keyset pages
that keep the filters; and bulk triage of selected items with one reason, a custody event
per item. The capture-time filter reads JSON metadata in SQL, so these run on SQLite and
PostgreSQL."""

from __future__ import annotations

import re

import pytest

from storage.models import EvidenceItem, ItemTag, User
from storage.reports import create_report
from tests.fixtures.casework import Casework

pytestmark = pytest.mark.both_databases


def _cards(html: str) -> list[str]:
    return re.findall(r'<a class="card__link" href="/items/([0-9a-f]{32})">', html)


def test_reports_filter_by_unit_and_owner(casework: Casework) -> None:
    cw = casework
    admin = cw.user("admin")
    north, south = cw.user("officer"), cw.user("officer")
    with cw.db.write() as s:
        create_report(cw.db, s, "RTC/N/1", "rtc", unit="North", owner_id=north.id, actor="test")
        create_report(cw.db, s, "CR/N/2", "crime", unit="North", actor="test")
        create_report(cw.db, s, "RTC/S/1", "rtc", unit="South", owner_id=south.id, actor="test")
    client = cw.client(admin)

    def refs(query: str) -> set[str]:
        r = client.get(f"/reports?{query}")
        assert r.status_code == 200
        return set(re.findall(r'href="/reports/[0-9a-f]{32}">([^<]+)<', r.text))

    assert refs("unit=North") == {"RTC/N/1", "CR/N/2"}
    assert refs(f"owner={north.email.upper()}") == {"RTC/N/1"}
    assert refs("unit=North&kind=rtc") == {"RTC/N/1"}
    assert refs("owner=nobody@force.test") == set()
    assert refs("q=RTC") == {"RTC/N/1", "RTC/S/1"}
    page = client.get("/reports?unit=North").text
    assert 'id="unit" name="unit" value="North"' in page


def test_evidence_filters_and_pages_keep_them(casework: Casework) -> None:
    cw = casework
    officer = cw.user("officer")
    report = cw.report(officer)
    photo_march = cw.item(report, metadata={"kind": "image", "captured_at": "2026:03:01 08:10:00"}).item
    photo_may = cw.item(report, metadata={"kind": "image", "captured_at": "2026:05:20 17:00:00"}).item
    cw.mp4 = None
    scanning = cw.item(report, state="scanning", derivatives={}).item
    with cw.db.write() as s:
        video = EvidenceItem(report_id=report.id, blob_key="originals/v", sha256="1" * 64, state="ready",
                             detected_type="video/mp4",
                             media_metadata={"kind": "video", "creation_time": "2026-03-02T10:00:00.000000Z"})
        s.add(video)
        s.flush()
        video_id = video.id
        row = s.get(EvidenceItem, photo_may.id)
        assert row is not None
        row.triage = "accepted"
        s.add(row)
        s.add(ItemTag(item_id=photo_march.id, tag="number-plate"))
    client = cw.client(officer)

    def grid(query: str) -> set[str]:
        r = client.get(f"/reports/{report.id}?{query}")
        assert r.status_code == 200
        return set(_cards(r.text))

    assert grid("media=video") == {video_id}
    assert grid("media=image&state=ready") == {photo_march.id, photo_may.id}
    assert grid("state=scanning") == {scanning.id}
    assert grid("triage=accepted") == {photo_may.id}
    assert grid("tag=Number-Plate") == {photo_march.id}
    # Capture time from the camera's clock, EXIF and video alike, by day.
    assert grid("captured_from=2026-03-01&captured_to=2026-03-31") == {photo_march.id, video_id}
    assert grid("captured_from=2026-03-02") == {photo_may.id, video_id}
    assert grid("captured_to=2026-03-01") == {photo_march.id}
    assert grid("state=not-a-state") == {photo_march.id, photo_may.id, scanning.id, video_id}  # ignored


def test_filtered_keyset_pages(casework: Casework, monkeypatch: pytest.MonkeyPatch) -> None:
    from reviewer_ui import reports

    monkeypatch.setattr(reports, "GRID_PAGE_SIZE", 2)
    cw = casework
    officer = cw.user("officer")
    report = cw.report(officer)
    declined = []
    for i in range(5):
        item = cw.item(report).item
        if i != 2:
            declined.append(item.id)
    client = cw.client(officer)
    r = client.post(f"/reports/{report.id}/triage", {"decision": "declined", "reason": "duplicate",
                                                     "item": declined})  # type: ignore[dict-item]
    assert r.status_code == 303
    seen: list[str] = []
    url = f"/reports/{report.id}?triage=declined"
    while url:
        page = client.get(url).text
        seen += _cards(page)
        found = re.search(r'<a href="(/reports/[^"]+)" rel="next">', page)
        url = found.group(1).replace("&amp;", "&").split("#")[0] if found else ""
        if url:
            assert "triage=declined" in url and "after=" in url
    assert seen == declined


def test_bulk_triage_records_one_event_per_item(casework: Casework) -> None:
    cw = casework
    officer, other = cw.user("officer"), cw.user("officer")
    report = cw.report(officer)
    elsewhere = cw.report(other)
    items = [cw.item(report).item.id for _ in range(3)]
    foreign = cw.item(elsewhere).item.id
    client = cw.client(officer)
    page = client.get(f"/reports/{report.id}").text
    assert all(f'name="item" value="{i}" form="bulk-triage"' in page for i in items)

    # Missing parts are named on the form; nothing changes.
    r = client.post(f"/reports/{report.id}/triage", {"decision": "accepted", "reason": "clear"})
    assert r.status_code == 400 and 'id="bulk-items-error"' in r.text
    r = client.post(f"/reports/{report.id}/triage", {"item": items[:2], "decision": "accepted"})  # type: ignore[dict-item]
    assert r.status_code == 400 and 'id="bulk-reason-error"' in r.text
    assert cw.events("item.triage") == []
    # An item of another report in the selection: refused whole, recorded as a probe.
    r = client.post(f"/reports/{report.id}/triage", {"item": [items[0], foreign], "decision": "accepted",  # type: ignore[dict-item]
                                                     "reason": "clear"})
    assert r.status_code == 404
    assert cw.events("item.triage") == []
    assert cw.events("access.denied")[-1].detail["reason"] == "triage.bulk"  # type: ignore[index]
    # Another officer's report: the uniform 404.
    assert cw.client(other).post(f"/reports/{report.id}/triage", {"item": items[0], "decision": "accepted",
                                                                  "reason": "x"}).status_code == 404

    r = client.post(f"/reports/{report.id}/triage", {"item": items[:2], "decision": "accepted",  # type: ignore[dict-item]
                                                     "reason": "shows the junction", "back": "?triage=pending"})
    assert (r.status_code, r.headers["location"]) == (303, f"/reports/{report.id}?triage=pending#evidence-heading")
    events = cw.events("item.triage")
    assert sorted(e.item_id or "" for e in events) == sorted(items[:2])
    assert all(e.actor == officer.email and e.detail == {"from": "pending", "to": "accepted",
                                                         "reason": "shows the junction", "bulk": True,
                                                         "selected": 2} for e in events)
    with cw.db.read() as s:
        states = {i: s.get(EvidenceItem, i).triage for i in items}  # type: ignore[union-attr]
    assert states == {items[0]: "accepted", items[1]: "accepted", items[2]: "pending"}
    # A supervisor of no unit, an auditor: no such form, and a post is the uniform 404.
    auditor = cw.client(cw.user("auditor"))
    assert 'form="bulk-triage"' not in auditor.get(f"/reports/{report.id}").text
    assert auditor.post(f"/reports/{report.id}/triage", {"item": items[2], "decision": "accepted",
                                                         "reason": "x"}).status_code == 404
    assert isinstance(officer, User)
