"""i15 item 5: after re-authentication for a download or a share, the action the officer
asked for completes. Before, the step-up was a redirect to /reauth that dropped the form:
the reason was lost and nothing downloaded. Now the form is held on the code page (in the
officer's own browser, nothing server-side) and the request that brings a passing code
carries the action out, with the reason in the ledger."""

from __future__ import annotations

import re
from pathlib import Path

from sqlmodel import select
from starlette.testclient import TestClient

from storage.blobs.filesystem import FilesystemBlobStore
from storage.models import Report, Share
from storage.reports import create_report
from tests.fixtures.evidence import seed_item
from tests.fixtures.reviewer import ReviewHarness, Staff, csrf_of

REASON = "Disclosure to CPS under case file 12"


def _stale_officer_with_item(review: ReviewHarness, tmp_path: Path) -> tuple[Staff, TestClient, str]:
    officer = review.make_user("officer")
    with review.db.write() as s:
        report: Report = create_report(review.db, s, "RTC/2026/0099", "rtc", title="Collision",
                                       owner_id=officer.user_id, actor="test")
    item = seed_item(review.db, FilesystemBlobStore(tmp_path / "blobs"), report, filename="crash.jpg")
    client = review.client()
    review.sign_in(client, officer)
    review.clock.advance(minutes=10)  # past the five-minute step-up window
    return officer, client, item.item.id


def _held_form(html: str) -> dict[str, str]:
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))
    return fields


def test_the_download_completes_after_the_code_with_the_reason_in_the_ledger(review: ReviewHarness,
                                                                              tmp_path: Path) -> None:
    officer, client, item_id = _stale_officer_with_item(review, tmp_path)
    page = client.get(f"/items/{item_id}")
    r = client.post(f"/items/{item_id}/original", data={"reason": REASON, "csrf_token": csrf_of(page.text)})
    assert r.status_code == 403 and "Confirm it is you" in r.text
    assert REASON in r.text and "Downloading an original needs a fresh code" in r.text
    assert review.events("item.original_downloaded") == []
    held = _held_form(r.text)
    assert held["reason"] == REASON and "csrf_token" in held
    # A wrong code: the same page again, the form still held, nothing downloaded.
    wrong = client.post(f"/items/{item_id}/original", data={**held, "step_up_code": "000000"})
    assert wrong.status_code == 400 and _held_form(wrong.text)["reason"] == REASON
    assert review.events("item.original_downloaded") == []
    held = _held_form(wrong.text)
    done = client.post(f"/items/{item_id}/original", data={**held, "step_up_code": review.next_code(officer)})
    assert done.status_code == 200, done.text
    assert done.headers["content-disposition"].startswith("attachment") and done.content[:2] == b"\xff\xd8"
    [event] = review.events("item.original_downloaded")
    assert event.actor == officer.email and event.detail is not None and event.detail["reason"] == REASON
    assert review.events("auth.step_up")
    # The re-issued session is on the answer: the next download needs no code.
    fresh = csrf_of(client.get(f"/items/{item_id}").text)
    again = client.post(f"/items/{item_id}/original", data={"reason": REASON, "csrf_token": fresh})
    assert again.status_code == 200 and len(review.events("item.original_downloaded")) == 2


def test_the_share_is_made_after_the_code(review: ReviewHarness, tmp_path: Path) -> None:
    officer, client, item_id = _stale_officer_with_item(review, tmp_path)
    partner = review.make_user("partner")
    page = client.get(f"/items/{item_id}")
    form = {"partner": f"user:{partner.user_id}", "days": "5", "allow_download": "yes"}
    r = client.post(f"/items/{item_id}/shares", data={**form, "csrf_token": csrf_of(page.text)})
    assert r.status_code == 403 and "Sharing evidence outside the force needs a fresh code" in r.text
    with review.db.read() as s:
        assert list(s.exec(select(Share))) == []
    held = _held_form(r.text)
    assert {k: held[k] for k in form} == form
    done = client.post(f"/items/{item_id}/shares", data={**held, "step_up_code": review.next_code(officer)})
    assert done.status_code == 303 and done.headers["location"] == f"/items/{item_id}#shares"
    [created] = review.events("share.created")
    assert created.actor == officer.email and created.detail is not None
    landed = client.get(done.headers["location"])
    assert "Shared." in landed.text


def test_a_stranger_gets_the_uniform_404_not_a_code_page(review: ReviewHarness, tmp_path: Path) -> None:
    _officer, _client, item_id = _stale_officer_with_item(review, tmp_path)
    stranger = review.make_user("officer")
    client = review.client()
    review.sign_in(client, stranger)
    review.clock.advance(minutes=10)
    token = csrf_of(client.get("/reports").text)
    for path in ("original", "shares"):
        r = client.post(f"/items/{item_id}/{path}", data={"reason": REASON, "partner": "user:x", "days": "5",
                                                          "csrf_token": token})
        assert r.status_code == 404 and "Confirm it is you" not in r.text, path
