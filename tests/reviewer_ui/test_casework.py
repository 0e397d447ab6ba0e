"""Reports, links, submissions, the evidence grid, triage, notes, tags and shares."""

from __future__ import annotations

import datetime as dt
import re

from sqlmodel import col, select

from storage.models import EvidenceItem, ItemTag, Note, Share, Submission, UploadLink, utcnow
from tests.fixtures.casework import Casework
from tests.fixtures.evidence import bulk_seed


def test_officer_creates_a_report_and_lands_on_its_page(casework: Casework) -> None:
    officer = casework.user("officer")
    client = casework.client(officer)
    form = client.get("/reports/new")
    assert form.status_code == 200 and 'name="reference"' in form.text
    r = client.post("/reports", {"reference": "CRIME/2026/77", "kind": "crime", "title": "Burglary"})
    assert r.status_code == 303
    page = client.get(r.headers["location"])
    assert page.status_code == 200
    assert "Report CRIME/2026/77" in page.text
    assert casework.events("report.created")[0].actor == officer.email


def test_invalid_or_duplicate_reference_is_refused_with_the_form(casework: Casework) -> None:
    client = casework.client(casework.user("officer"))
    assert client.post("/reports", {"reference": "../x", "kind": "crime"}).status_code == 400
    assert client.post("/reports", {"reference": "A1", "kind": "crime"}).status_code == 303
    dup = client.post("/reports", {"reference": "A1", "kind": "crime"})
    assert dup.status_code == 409 and "already exists" in dup.text


def test_auditor_and_partner_cannot_create_reports(casework: Casework) -> None:
    for role in ("auditor", "partner"):
        client = casework.client(casework.user(role))
        assert client.get("/reports/new").status_code == 404
        assert client.post("/reports", {"reference": f"X-{role}", "kind": "crime"}).status_code == 404


def test_report_list_searches_by_reference_kind_date_and_waiting(casework: Casework) -> None:
    officer = casework.user("officer")
    client = casework.client(officer)
    a = casework.report(officer, "RTC/2026/0001", kind="rtc")
    casework.report(officer, "CRIME/2026/0002", kind="crime")
    casework.item(a)  # a pending item: new evidence waiting
    page = client.get("/reports?q=rtc")
    assert "RTC/2026/0001" in page.text and "CRIME/2026/0002" not in page.text
    page = client.get("/reports?kind=crime")
    assert "CRIME/2026/0002" in page.text and "RTC/2026/0001" not in page.text
    page = client.get("/reports?waiting=1")
    assert "RTC/2026/0001" in page.text and "CRIME/2026/0002" not in page.text
    today = a.created_at.date()  # the report's own day: not a second clock reading across midnight
    assert "RTC/2026/0001" in client.get(f"/reports?from={today}&to={today}").text
    tomorrow = today + dt.timedelta(days=1)
    assert "No reports match" in client.get(f"/reports?from={tomorrow}").text


def test_officer_sees_only_own_or_assigned_reports(casework: Casework) -> None:
    mine, other = casework.user("officer"), casework.user("officer")
    casework.report(mine, "MINE-1")
    casework.report(other, "THEIRS-1")
    page = casework.client(mine).get("/reports")
    assert "MINE-1" in page.text and "THEIRS-1" not in page.text
    admin_page = casework.client(casework.user("admin")).get("/reports")
    assert "MINE-1" in admin_page.text and "THEIRS-1" in admin_page.text


def test_keyset_pagination_walks_two_thousand_items_without_gaps(casework: Casework) -> None:
    admin = casework.user("admin")
    ids = bulk_seed(casework.db, reports=400, items_per_report=5)  # 2,000 items
    client = casework.client(admin)
    seen: list[str] = []
    url = "/reports"
    pages = 0
    while url:
        page = client.get(url)
        assert page.status_code == 200
        seen += re.findall(r'href="/reports/([0-9a-f]{32})"', page.text)
        nxt = re.search(r'href="(/reports\?[^"]*after=[^"]+)" rel="next"', page.text)
        url = nxt.group(1).replace("&amp;", "&") if nxt else ""
        pages += 1
    assert pages == 8
    assert seen == list(reversed(ids))  # newest first, each exactly once
    # The waiting filter pages too: every fourth report has a pending item.
    waiting = re.findall(r'href="/reports/([0-9a-f]{32})"', client.get("/reports?waiting=1").text)
    assert waiting == list(reversed(ids[::4]))[:50]


def test_report_page_shows_submission_statement_and_declaration(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    with casework.db.write() as session:
        link = UploadLink(report_id=report.id, token_hash="a" * 64, expires_at=utcnow() + dt.timedelta(days=1),
                          max_files=5, max_bytes=10 << 20, used_files=1, used_bytes=1234)
        session.add(link)
        session.flush()
        sub = Submission(reference="EXH-AAAA-BBBB", link_id=link.id, report_id=report.id,
                         description="I saw the <b>blue</b> car hit the cyclist.", occurred_at="Tuesday 8am",
                         location="High Street", contact_name="A. Citizen", contact_details="07700 900000",
                         declaration_version="v1", declaration_accepted_at=utcnow())
        session.add(sub)
    seeded = casework.item(report)
    with casework.db.write() as session:
        item = session.get(EvidenceItem, seeded.item.id)
        assert item is not None
        item.submission_id = sub.id
        session.add(item)
    page = casework.client(officer).get(f"/reports/{report.id}")
    assert page.status_code == 200
    assert "I saw the &lt;b&gt;blue&lt;/b&gt; car hit the cyclist." in page.text  # escaped, never HTML
    assert "EXH-AAAA-BBBB" in page.text and "version v1 accepted" in page.text
    assert "1 of 5" in page.text  # the link's use
    assert f'/items/{seeded.item.id}/media/thumbnail' in page.text
    assert casework.events("report.viewed")


def test_issuing_a_link_shows_url_and_qr_once_and_revoking_ends_it(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    client = casework.client(officer)
    r = client.post(f"/reports/{report.id}/links", {"expires": "3d", "max_files": "7", "max_bytes": "500M"})
    assert r.status_code == 200
    url = re.search(r'value="(http://testserver/u/[A-Za-z0-9_-]{43})"', r.text)
    assert url is not None
    assert '<img class="qr" src="data:image/svg+xml' in r.text and "data-copy-target" in r.text
    assert "Up to 7 files" in r.text
    with casework.db.read() as session:
        link = session.exec(select(UploadLink)).one()
    assert link.max_files == 7 and link.max_bytes == 500 << 20
    # The token is never stored and never shown again.
    assert url.group(1).rsplit("/", 1)[1] not in client.get(f"/reports/{report.id}").text
    r = client.post(f"/links/{link.id}/revoke", data={"confirmed": "yes"})
    assert r.status_code == 303
    with casework.db.read() as session:
        assert session.get(UploadLink, link.id).revoked_at is not None  # type: ignore[union-attr]
    assert [e.action for e in casework.events() if e.action.startswith("link.")] == ["link.created", "link.revoked"]


def test_bad_link_quotas_are_refused(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    r = casework.client(officer).post(f"/reports/{report.id}/links", {"expires": "7d", "max_files": "0", "max_bytes": "1G"})
    assert r.status_code == 400


def test_other_officer_cannot_issue_or_revoke_links(casework: Casework) -> None:
    owner, stranger = casework.user("officer"), casework.user("officer")
    report = casework.report(owner)
    casework.client(owner).post(f"/reports/{report.id}/links", {"expires": "1d", "max_files": "1", "max_bytes": "1M"})
    with casework.db.read() as session:
        link = session.exec(select(UploadLink)).one()
    client = casework.client(stranger)
    assert client.post(f"/reports/{report.id}/links", {"expires": "1d", "max_files": "1", "max_bytes": "1M"}).status_code == 404
    assert client.post(f"/links/{link.id}/revoke").status_code == 404
    assert len(casework.events("access.denied")) == 2


def test_progress_json_reports_state_and_percent(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    seeded = casework.item(report, state="processing")
    r = casework.client(officer).get(f"/items/{seeded.item.id}/progress.json")
    assert r.status_code == 200
    assert r.json() == {"id": seeded.item.id, "state": "processing", "progress": 40, "verdict": "clean",
                        "triage": "pending", "terminal": False}
    page = casework.client(officer).get(f"/reports/{report.id}")
    assert f'data-progress-url="/items/{seeded.item.id}/progress.json"' in page.text
    assert '<script src="/static/casework.js"' in page.text


def test_triage_needs_a_reason_and_is_a_custody_event(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    item = casework.item(report).item
    client = casework.client(officer)
    assert client.post(f"/items/{item.id}/triage", {"decision": "declined", "reason": ""}).status_code == 400
    assert client.post(f"/items/{item.id}/triage", {"decision": "maybe", "reason": "x"}).status_code == 400
    r = client.post(f"/items/{item.id}/triage", {"decision": "declined", "reason": "Not the incident"})
    assert r.status_code == 303
    with casework.db.read() as session:
        stored = session.get(EvidenceItem, item.id)
        assert stored is not None and stored.triage == "declined" and stored.triage_reason == "Not the incident"
    [event] = casework.events("item.triage", item.id)
    assert event.detail == {"from": "pending", "to": "declined", "reason": "Not the incident"}


def test_notes_are_append_only_and_an_edit_supersedes(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    item = casework.item(report).item
    client = casework.client(officer)
    assert client.post(f"/items/{item.id}/notes", {"body": "First thought"}).status_code == 303
    with casework.db.read() as session:
        first = session.exec(select(Note)).one()
    assert client.post(f"/items/{item.id}/notes", {"body": "Better thought", "supersedes": first.id}).status_code == 303
    # Editing the old version again is refused: edit the latest.
    assert client.post(f"/items/{item.id}/notes", {"body": "Fork", "supersedes": first.id}).status_code == 400
    with casework.db.read() as session:
        notes = list(session.exec(select(Note).order_by(col(Note.created_at))))
    assert [n.body for n in notes] == ["First thought", "Better thought"]
    assert notes[1].supersedes_id == first.id
    page = client.get(f"/items/{item.id}")
    assert "Better thought" in page.text and "1 earlier version" in page.text
    history = client.get(f"/items/{item.id}/notes")
    assert "First thought" in history.text and "Better thought" in history.text
    assert [e.action for e in casework.events(item_id=item.id) if e.action.startswith("note.")] == ["note.added", "note.edited"]
    assert "First thought" not in str([e.detail for e in casework.events()])  # the ledger keeps a hash


def test_tags_are_added_normalised_and_removed(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    item = casework.item(report).item
    client = casework.client(officer)
    assert client.post(f"/items/{item.id}/tags", {"tag": "  Dash  Cam "}).status_code == 303
    assert client.post(f"/items/{item.id}/tags", {"tag": "<script>"}).status_code == 400
    with casework.db.read() as session:
        assert [t.tag for t in session.exec(select(ItemTag))] == ["dash cam"]
    assert client.post(f"/items/{item.id}/tags/remove", {"tag": "dash cam"}).status_code == 303
    with casework.db.read() as session:
        assert list(session.exec(select(ItemTag))) == []
    assert [e.action for e in casework.events(item_id=item.id) if e.action.startswith("tag.")] == ["tag.added", "tag.removed"]


def test_auditor_reads_but_cannot_change(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    item = casework.item(report).item
    auditor = casework.client(casework.user("auditor"))
    assert auditor.get(f"/items/{item.id}").status_code == 200
    assert auditor.get(f"/items/{item.id}/notes").status_code == 200
    for path, data in [("triage", {"decision": "accepted", "reason": "ok"}), ("notes", {"body": "x"}),
                       ("tags", {"tag": "x"})]:
        assert auditor.post(f"/items/{item.id}/{path}", data).status_code == 404, path
    assert auditor.post(f"/items/{item.id}/original", {"reason": "I want to look at it"}).status_code == 404


def test_share_to_partner_org_then_revoke_acts_on_next_request(casework: Casework) -> None:
    officer = casework.user("officer")
    partner = casework.user("partner", org="CPS North")
    report = casework.report(officer)
    shared = casework.item(report).item
    sibling = casework.item(report).item
    client = casework.client(officer)
    page = client.get(f"/items/{shared.id}")
    org_value = re.search(r'<option value="(org:[0-9a-f]{32})">Organisation: CPS North', page.text)
    assert org_value is not None
    r = client.post(f"/items/{shared.id}/shares", {"partner": org_value.group(1), "days": "14", "allow_download": "yes"})
    assert r.status_code == 303
    p = casework.client(partner)
    assert p.get(f"/items/{shared.id}").status_code == 200
    assert p.get(f"/items/{shared.id}/media/preview").status_code == 200
    assert p.get(f"/items/{sibling.id}").status_code == 404
    listing = p.get(f"/reports/{report.id}")
    assert shared.id in listing.text and sibling.id not in listing.text
    assert "Submissions" not in listing.text and "Upload links" not in listing.text  # no citizen PII (AC-04)
    with casework.db.read() as session:
        share = session.exec(select(Share)).one()
    assert share.allow_download and share.partner_org_id is not None
    assert client.post(f"/shares/{share.id}/revoke", data={"confirmed": "yes"}).status_code == 303
    assert p.get(f"/items/{shared.id}").status_code == 404
    assert p.get(f"/items/{shared.id}/media/preview").status_code == 404
    actions = [e.action for e in casework.events()]
    assert "share.created" in actions and "share.revoked" in actions


def test_whole_report_share_to_one_partner_user(casework: Casework) -> None:
    officer = casework.user("officer")
    partner = casework.user("partner")
    other_partner = casework.user("partner", org="Council")
    report = casework.report(officer)
    item = casework.item(report).item
    r = casework.client(officer).post(f"/reports/{report.id}/shares", {"partner": f"user:{partner.id}", "days": "1"})
    assert r.status_code == 303
    assert casework.client(partner).get(f"/items/{item.id}").status_code == 200
    assert casework.client(other_partner).get(f"/items/{item.id}").status_code == 404
    # No download flag: the original stays out of reach.
    assert casework.client(partner).post(f"/items/{item.id}/original", {"reason": "for the file please"}).status_code == 404


def test_infected_or_unfinished_items_cannot_be_shared(casework: Casework) -> None:
    officer = casework.user("officer")
    partner = casework.user("partner")
    report = casework.report(officer)
    for state in ("infected", "processing", "unscannable"):
        item = casework.item(report, state=state).item
        r = casework.client(officer).post(f"/items/{item.id}/shares", {"partner": f"user:{partner.id}", "days": "5"})
        assert r.status_code == 409, state
    with casework.db.read() as session:
        assert list(session.exec(select(Share))) == []


def test_share_refuses_non_partner_grantee_and_bad_expiry(casework: Casework) -> None:
    officer = casework.user("officer")
    other_officer = casework.user("officer")
    partner = casework.user("partner")
    report = casework.report(officer)
    item = casework.item(report).item
    client = casework.client(officer)
    assert client.post(f"/items/{item.id}/shares", {"partner": f"user:{other_officer.id}", "days": "5"}).status_code == 400
    assert client.post(f"/items/{item.id}/shares", {"partner": f"user:{partner.id}", "days": "400"}).status_code == 400
    with casework.db.read() as session:
        assert list(session.exec(select(Share))) == []


def test_evidence_grid_pages_by_keyset_within_a_report(casework: Casework) -> None:
    officer = casework.user("officer")
    [report_id] = bulk_seed(casework.db, reports=1, items_per_report=130, owner_id=officer.id)
    client = casework.client(officer)
    seen: list[str] = []
    url = f"/reports/{report_id}"
    while url:
        page = client.get(url)
        assert page.status_code == 200
        seen += re.findall(r'<a class="card__link" href="/items/([0-9a-f]{32})"', page.text)
        nxt = re.search(r'href="(/reports/[0-9a-f]{32}\?after=[^"#]+)#evidence-heading" rel="next"', page.text)
        url = nxt.group(1) if nxt else ""
    with casework.db.read() as session:
        expected = list(session.exec(select(EvidenceItem.id).where(col(EvidenceItem.report_id) == report_id)
                                     .order_by(col(EvidenceItem.received_at), col(EvidenceItem.id))))
    assert seen == expected and len(seen) == 130


def test_partner_lists_only_reports_with_items_shared_to_them_and_no_counts(casework: Casework) -> None:
    officer = casework.user("officer")
    partner = casework.user("partner")
    shared_report = casework.report(officer, "SHARED-1")
    casework.report(officer, "HIDDEN-1")
    item = casework.item(shared_report).item
    casework.item(shared_report)  # a sibling the partner must not learn about
    casework.client(officer).post(f"/items/{item.id}/shares", {"partner": f"user:{partner.id}", "days": "2"})
    page = casework.client(partner).get("/reports")
    assert "SHARED-1" in page.text and "HIDDEN-1" not in page.text
    assert "Waiting for triage" not in page.text and "Items</th>" not in page.text


def test_sharing_asks_for_a_fresh_code_after_five_minutes(casework: Casework) -> None:
    officer = casework.user("officer")
    partner = casework.user("partner")
    report = casework.report(officer)
    item = casework.item(report).item
    client = casework.client(officer, verified_seconds_ago=600)
    # The form is held on a code page (tests/reviewer_ui/test_step_up_keeps_the_form.py).
    r = client.post(f"/items/{item.id}/shares", {"partner": f"user:{partner.id}", "days": "5"})
    assert r.status_code == 403 and "Confirm it is you" in r.text
    r = client.post(f"/reports/{report.id}/shares", {"partner": f"user:{partner.id}", "days": "5"})
    assert r.status_code == 403 and "Confirm it is you" in r.text
    with casework.db.read() as session:
        assert list(session.exec(select(Share))) == []
    assert casework.events("share.created") == []
