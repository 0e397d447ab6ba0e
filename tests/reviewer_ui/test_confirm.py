"""Destructive actions ask first, with a page that needs no JavaScript (issue 15 item 2):
revoke a share, revoke an upload link (report page and admin page), disable an account,
reset its two-step sign-in or its password. The first POST changes nothing and answers with
a page naming what would happen; its "Yes" form (CSRF token, the held fields,
``confirmed=yes``) carries it out; an account that may not act gets the 404, not a question."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlmodel import select

from storage import links
from storage.models import Share, UploadLink
from tests.fixtures.casework import Casework
from tests.fixtures.reviewer import ReviewHarness, csrf_of

FORM_RE = re.compile(r'<form method="post" action="([^"]+)" class="stack">(.*?)</form>', re.S)
HIDDEN_RE = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def yes_form(html: str) -> tuple[str, dict[str, str]]:
    """The confirmation page's form, as a browser without JavaScript would submit it."""
    found = FORM_RE.search(html)
    assert found, "no confirmation form"
    return found.group(1), dict(HIDDEN_RE.findall(found.group(2)))


ADMIN_CASES: list[tuple[str, str, Any]] = [
    ("disable", "Disable the account", lambda r, t: r.user(t).disabled),
    ("reset-mfa", "Reset two-step sign-in for", lambda r, t: not r.user(t).mfa_enrolled),
    ("reset-password", "Issue a new password for", lambda r, t: bool(r.events("user.reset_password"))),
]


@pytest.mark.parametrize("case", ADMIN_CASES, ids=[c[0] for c in ADMIN_CASES])
def test_an_account_change_asks_first_and_the_yes_form_carries_it_out(review: ReviewHarness,
                                                                       case: tuple[str, str, Any]) -> None:
    action, question, done = case
    admin = review.make_user("admin")
    client = review.client()
    review.signed_in_session(client, admin)
    target = review.make_user("officer", email="pc.target@force.example")
    asked = review.post(client, f"/admin/users/{target.user_id}/{action}")
    assert asked.status_code == 200 and f"{question} pc.target@force.example?" in asked.text
    assert "<title>" + question in asked.text and "Nothing has been done yet" in asked.text
    assert not done(review, target) and not review.events(f"user.{action.replace('-', '_')}")
    assert 'href="/admin/users">Cancel' in asked.text
    action_url, fields = yes_form(asked.text)
    assert action_url == f"/admin/users/{target.user_id}/{action}"
    assert fields["confirmed"] == "yes" and fields["csrf_token"] == csrf_of(asked.text)
    r = client.post(action_url, data=fields)
    assert r.status_code in (200, 303) and done(review, target)
    # The same form without its CSRF token is refused like any other POST.
    assert client.post(action_url, data={"confirmed": "yes"}).status_code == 403


def test_enable_and_sign_out_everywhere_do_not_ask(review: ReviewHarness) -> None:
    admin = review.make_user("admin")
    client = review.client()
    review.signed_in_session(client, admin)
    target = review.make_user("officer")
    assert review.post(client, f"/admin/users/{target.user_id}/signout").status_code == 303
    assert review.post(client, f"/admin/users/{target.user_id}/enable").status_code == 303


def test_revoking_a_share_asks_first(casework: Casework) -> None:
    officer = casework.user("officer")
    casework.user("partner", org="CPS North")
    report = casework.report(officer)
    item = casework.item(report).item
    client = casework.client(officer)
    org = re.search(r'<option value="(org:[0-9a-f]{32})">Organisation: CPS North', client.get(f"/items/{item.id}").text)
    assert org is not None
    assert client.post(f"/items/{item.id}/shares", {"partner": org.group(1), "days": "14"}).status_code == 303
    with casework.db.read() as s:
        share = s.exec(select(Share)).one()
    asked = client.post(f"/shares/{share.id}/revoke")
    assert asked.status_code == 200 and "Revoke the share with CPS North?" in asked.text
    assert f'href="/items/{item.id}#shares">Cancel' in asked.text
    assert not casework.events("share.revoked")
    url, fields = yes_form(asked.text)
    assert client.http.post(url, data=fields).status_code == 303
    assert len(casework.events("share.revoked")) == 1
    # Someone who may not revoke it gets the uniform 404, never the question.
    other = casework.client(casework.user("officer"))
    assert other.post(f"/shares/{share.id}/revoke").status_code == 404


def test_revoking_an_upload_link_asks_first_on_the_report_page_and_the_admin_page(casework: Casework) -> None:
    officer = casework.user("officer")
    admin = casework.user("admin")
    report = casework.report(officer, reference="RTC/2026/0555")
    with casework.db.write() as s:
        first = links.create_link(casework.db, s, report, public_url="http://x", expires_in_seconds=3600, max_files=5,
                                  max_bytes=1 << 30, actor=officer.email).link
        second = links.create_link(casework.db, s, report, public_url="http://x", expires_in_seconds=3600,
                                   max_files=5, max_bytes=1 << 30, actor=officer.email).link
    client = casework.client(officer)
    asked = client.post(f"/links/{first.id}/revoke")
    assert asked.status_code == 200 and "Revoke this upload link?" in asked.text
    url, fields = yes_form(asked.text)
    assert client.http.post(url, data=fields).status_code == 303

    admin_client = casework.client(admin)
    asked = admin_client.post(f"/admin/links/{second.id}/revoke")
    assert asked.status_code == 200 and "Revoke the upload link for RTC/2026/0555?" in asked.text
    with casework.db.read() as s:
        assert s.get(UploadLink, second.id).revoked_at is None  # type: ignore[union-attr]
    url, fields = yes_form(asked.text)
    assert admin_client.http.post(url, data=fields).status_code == 303
    with casework.db.read() as s:
        assert all(s.get(UploadLink, i).revoked_at is not None for i in (first.id, second.id))  # type: ignore[union-attr]
    assert len(casework.events("link.revoked")) == 2
