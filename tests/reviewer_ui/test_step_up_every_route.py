"""i15 item 5, the class: every route that asks for a fresh code holds the form through
``reviewer_ui.stepup.gate`` and, once the code is answered on the held page, carries out
the action the officer (or partner) asked for, with the reason they typed in the ledger.

Before, "Export for court" and the evidence bundle (POST /items/{id}/bundle) redirected
to /reauth, which dropped the form: the reason was lost and nothing was exported. The
admin routes and the legal-hold release have their own tests
(test_admin_step_up.py, test_retention_pages.py); this file covers the evidence routes
and checks that no handler sends a stale session to /reauth any more."""

from __future__ import annotations

import ast
import datetime as dt
import re
import zipfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from storage.blobs.filesystem import FilesystemBlobStore
from storage.models import Report, Share, User
from storage.reports import create_report
from tests.fixtures.evidence import seed_item
from tests.fixtures.reviewer import ReviewHarness, Staff, csrf_of

REASON = "Disclosure to CPS under case file 12"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Case:
    """One route that needs a fresh code: who asks, which page carries the form, what is
    posted, and the ledger event whose detail proves the action was done as asked."""

    who: str
    page: str
    path: str
    form: dict[str, str]
    event: str
    why: str
    answer: int


def _held_form(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))


def _setup(review: ReviewHarness, tmp_path: Path, route: str) -> tuple[Staff, TestClient, Case]:
    officer = review.make_user("officer")
    with review.db.write() as s:
        report: Report = create_report(review.db, s, "RTC/2026/0099", "rtc", title="Collision",
                                       owner_id=officer.user_id, actor="test")
    item = seed_item(review.db, FilesystemBlobStore(tmp_path / "blobs"), report, filename="crash.jpg").item
    partner = review.make_user("partner")
    with review.db.write() as s:
        partner_user = s.get(User, partner.user_id)
        assert partner_user is not None
        now = review.clock()
        s.add(Share(report_id=report.id, item_id=item.id, partner_org_id=partner_user.org_id,
                    partner_user_id=partner.user_id, allow_download=True, created_by=officer.user_id,
                    created_at=now, expires_at=now + dt.timedelta(days=10)))
    reason = {"reason": REASON}
    share = {"partner": f"user:{partner.user_id}", "days": "5", "allow_download": "yes"}
    case = {
        "original": Case("officer", f"/items/{item.id}", f"/items/{item.id}/original", reason,
                         "item.original_downloaded", "Downloading an original", 200),
        "item share": Case("officer", f"/items/{item.id}", f"/items/{item.id}/shares", share,
                           "share.created", "Sharing evidence outside the force", 303),
        "report share": Case("officer", f"/reports/{report.id}", f"/reports/{report.id}/shares", share,
                             "share.created", "Sharing evidence outside the force", 303),
        "export for court": Case("officer", f"/reports/{report.id}", f"/reports/{report.id}/export", reason,
                                 "export.requested", "Exporting a report&#39;s evidence", 200),
        "item bundle": Case("officer", f"/items/{item.id}", f"/items/{item.id}/bundle", reason,
                            "export.requested", "Downloading an evidence bundle", 200),
        "partner bundle": Case("partner", f"/items/{item.id}", f"/items/{item.id}/bundle", reason,
                               "export.requested", "Downloading an evidence bundle", 200),
    }[route]
    who = officer if case.who == "officer" else partner
    client = review.client()
    review.sign_in(client, who)
    review.clock.advance(minutes=10)  # past the five-minute step-up window
    return who, client, case


@pytest.mark.parametrize("route", ["original", "item share", "report share", "export for court", "item bundle",
                                   "partner bundle"])
def test_the_action_completes_after_the_code_on_the_held_page(review: ReviewHarness, tmp_path: Path,
                                                              route: str) -> None:
    who, client, case = _setup(review, tmp_path, route)
    before = len(review.events(case.event))
    page = client.get(case.page)
    assert page.status_code == 200, page.text
    r = client.post(case.path, data={**case.form, "csrf_token": csrf_of(page.text)})
    # Nothing is done on a stale session; the page asks for a code and holds the form.
    assert r.status_code == 403 and "Confirm it is you" in r.text, (r.status_code, r.headers.get("location"))
    assert f"{case.why} needs a fresh code" in r.text
    assert len(review.events(case.event)) == before
    held = _held_form(r.text)
    assert {k: held[k] for k in case.form} == case.form
    done = client.post(case.path, data={**held, "step_up_code": review.next_code(who)})
    assert done.status_code == case.answer, done.text[:500]
    events = review.events(case.event)[before:]
    assert len(events) == 1 and events[0].actor == who.email
    detail = events[0].detail or {}
    if "reason" in case.form:
        assert detail["reason"] == REASON
    if case.answer == 200:
        assert done.headers["content-disposition"].startswith("attachment")
        if case.path.endswith(("/export", "/bundle")):
            assert zipfile.ZipFile(BytesIO(done.content)).testzip() is None
            [created] = review.events("export.created")
            assert (created.detail or {})["reason"] == REASON
    else:
        with review.db.read() as s:
            from sqlmodel import col, select

            made = s.exec(select(Share).where(col(Share.created_by) == who.user_id)
                          .order_by(col(Share.created_at))).all()
            assert len(made) == 2 and made[-1].allow_download  # the fixture's, then the one asked for
    assert review.events("auth.step_up")


def test_no_handler_sends_a_stale_session_to_reauth_and_loses_the_form() -> None:
    """The class, not the instances: a handler that answers a stale session with a redirect
    to /reauth (``permissions.step_up_url``) drops the form. Only sharing's clock-jump
    fallback (the gate passed moments before) may still do it."""
    offenders = []
    for path in sorted((ROOT / "reviewer_ui").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "step_up_url":
                offenders.append(f"{path.name}:{node.lineno}")
    assert [o for o in offenders if not o.startswith("sharing.py:")] == []
    assert len(offenders) == 1
