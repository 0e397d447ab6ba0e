"""Every staff page checks the session inside its own thread hop (``ReviewContext.run_sync``
runs ``middleware.PendingSession`` first; the session middleware reads no database).
Everything the session check guarantees must hold on every page: an ended session shows
nothing and loses its cookie, a half signed-in session goes to the TOTP step, refusals
name who was refused, and every page knows who is signed in (SECURITY_CHECKLIST AC-10,
AC-11, AU-03). The GET routes are read from the app itself, so a page added later is
covered without touching this file."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import text, update
from sqlmodel import col
from starlette.routing import Route

from reviewer_ui import sessions
from storage.models import StaffSession, User
from tests.fixtures.casework import Casework
from tests.fixtures.reviewer import ReviewHarness, csrf_of


def page_routes(review: ReviewHarness) -> list[str]:
    """Every GET route of the staff app, ids filled in with one that matches nothing."""
    return [re.sub(r"\{[^}]+\}", "0" * 32, route.path) for route in review.app.routes
            if isinstance(route, Route) and "GET" in (route.methods or set())]


def _cleared(response: Any, name: str) -> bool:
    return any(v.startswith(f"{name}=") and ("max-age=0" in v.lower() or "expires=" in v.lower())
               for v in response.headers.get_list("set-cookie"))


def test_an_ended_session_shows_no_item_page_and_no_media(casework_video: Casework) -> None:
    officer = casework_video.user("officer")
    report = casework_video.report(officer)
    seeded = casework_video.item(report, media="video")
    client = casework_video.client(officer)
    page, media = f"/items/{seeded.item.id}", f"/items/{seeded.item.id}/media/proxy"
    assert client.get(page).status_code == 200
    assert client.get(media, headers={"Range": "bytes=0-9"}).status_code == 206
    streams = len(casework_video.events("media.stream", item_id=seeded.item.id))

    assert report.reference.encode() in client.get("/reports").content
    reports_seen = len([e for e in casework_video.events("report.viewed") if e.report_id == report.id])
    assert client.get(f"/reports/{report.id}").status_code == 200

    with casework_video.db.write() as session:
        sessions.revoke_all(casework_video.ctx, session, officer.id)  # sign out everywhere
    name = sessions.cookie_name(casework_video.settings)
    for path in (page, media, "/reports", f"/reports/{report.id}"):
        r = client.get(path, headers={"Range": "bytes=0-9"} if path == media else {})
        assert r.status_code == 303, path
        assert r.headers["location"] == "/login"
        assert seeded.derivatives["proxy"][:10] not in r.content
        assert report.reference.encode() not in r.content, path
        assert _cleared(r, name), path
    assert len(casework_video.events("media.stream", item_id=seeded.item.id)) == streams
    assert len([e for e in casework_video.events("report.viewed") if e.report_id == report.id]) == reports_seen + 1


def test_a_disabled_account_sees_nothing_at_once(casework_video: Casework) -> None:
    officer = casework_video.user("officer")
    seeded = casework_video.item(casework_video.report(officer), media="video")
    client = casework_video.client(officer)
    assert client.get(f"/items/{seeded.item.id}").status_code == 200
    with casework_video.db.write() as session:
        session.exec(update(User).where(col(User.id) == officer.id).values(disabled=True))
    for path in (f"/items/{seeded.item.id}", f"/items/{seeded.item.id}/media/proxy", "/reports",
                 f"/reports/{seeded.item.report_id}"):
        assert client.get(path).status_code == 303, path


def test_a_half_signed_in_session_is_sent_to_the_totp_step(casework_video: Casework) -> None:
    officer = casework_video.user("officer")
    seeded = casework_video.item(casework_video.report(officer), media="video")
    client = casework_video.client(officer)
    with casework_video.db.write() as session:
        session.exec(update(StaffSession).where(col(StaffSession.user_id) == officer.id).values(mfa_passed=False))
    for path in (f"/items/{seeded.item.id}", f"/items/{seeded.item.id}/media/proxy", "/reports",
                 f"/reports/{seeded.item.report_id}"):
        r = client.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"] == "/mfa"


def test_a_refused_media_request_names_the_officer_refused(casework_video: Casework) -> None:
    owner = casework_video.user("officer")
    seeded = casework_video.item(casework_video.report(owner), media="video")
    stranger = casework_video.user("officer")
    client = casework_video.client(stranger)
    for path in (f"/items/{seeded.item.id}/media/proxy", f"/items/{seeded.item.id}", f"/reports/{seeded.item.report_id}"):
        assert client.get(path).status_code == 404
        refused = casework_video.events("access.denied")[-1]
        assert refused.actor == stranger.email, path
    # Refused before the handler's own call (another site embedding the video): still named.
    r = client.get(f"/items/{seeded.item.id}/media/proxy", headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 404
    assert casework_video.events("access.denied")[-1].actor == stranger.email


def test_deferred_pages_carry_the_session_csrf_token_in_their_forms(casework_video: Casework) -> None:
    """The token is known only once the handler has checked the session: the forms on a
    report page and an item page (issue a link, add a note) must still carry it, or no
    officer could submit them."""
    officer = casework_video.user("officer")
    seeded = casework_video.item(casework_video.report(officer), media="video")
    client = casework_video.client(officer)
    for path in (f"/reports/{seeded.item.report_id}", f"/items/{seeded.item.id}", "/reports"):
        page = client.get(path).text
        tokens = set(re.findall(r'name="csrf_token" value="([^"]+)"', page))
        assert tokens == {client.csrf}, path
    assert client.get("/reports/new").status_code == 200  # not a report id: served as before


def test_every_page_knows_who_is_signed_in(review: ReviewHarness) -> None:
    """A page answered before its session check would show nobody signed in and forms
    without the session's CSRF token (no officer could submit them)."""
    admin = review.make_user("admin")
    client = review.client()
    review.signed_in_session(client, admin)
    token = csrf_of(client.get("/admin/users").text)
    paths = page_routes(review)
    assert "/audit" in paths and "/my-reports" in paths and "/reports/new" in paths
    for path in [*paths, "/no-such-page"]:
        r = client.get(path)
        if r.status_code in (301, 302, 303, 307):
            assert r.headers["location"] not in ("/login", "/mfa"), path  # signed in, so not sent to sign in
            continue
        assert r.status_code in (200, 404), (path, r.status_code)
        if r.headers["content-type"].startswith("text/html"):
            tokens = set(re.findall(r'name="csrf_token" value="([^"]*)"', r.text))
            assert tokens <= {token} and tokens, (path, tokens)


def test_an_ended_session_gets_no_page_and_loses_its_cookie(review: ReviewHarness) -> None:
    admin = review.make_user("admin")
    client = review.client()
    review.signed_in_session(client, admin)
    assert client.get("/admin/users").status_code == 200
    with review.db.write() as session:
        sessions.revoke_all(review.app.state.ctx, session, admin.user_id)  # sign out everywhere
    name = sessions.cookie_name(review.settings)
    for path in page_routes(review):
        if path == "/login":
            continue
        value = client.cookies.get(name)
        r = client.get(path)
        # Sent to sign in; only an unknown media kind is the plain 404 it is for everyone.
        assert (r.status_code == 303 and r.headers["location"] == "/login") or (
            r.status_code == 404 and path.endswith("/media/" + "0" * 32)), (path, r.status_code)
        assert _cleared(r, name), path
        client.cookies.set(name, value or "")  # the browser comes back with the old cookie
    r = client.get("/login")
    assert r.status_code == 200 and _cleared(r, name)


def test_the_session_store_down_lets_nobody_in(review: ReviewHarness) -> None:
    """AC-16: when the session check cannot read the store, pages and forms get the plain
    503 (nothing of the page, no details), on every path alike; a visitor without a
    session cookie still gets the sign-in page, which needs no database."""
    admin = review.make_user("admin")
    client = review.client()
    review.signed_in_session(client, admin)
    token = csrf_of(client.get("/admin/users").text)
    with review.db.write() as session:
        session.execute(text("ALTER TABLE staff_session RENAME TO staff_session_away"))
    try:
        for path in ("/reports", "/my-reports", "/audit", "/admin/users", "/reports/new", "/"):
            r = client.get(path)
            assert r.status_code == 503 and r.text == "Exhibit is unavailable. Try again shortly.", path
        r = client.post("/logout", data={"csrf_token": token})
        assert r.status_code == 503 and r.text == "Exhibit is unavailable. Try again shortly."
        assert review.client().get("/login").status_code == 200
    finally:
        with review.db.write() as session:
            session.execute(text("ALTER TABLE staff_session_away RENAME TO staff_session"))
    assert client.get("/admin/users").status_code == 200  # the same session, once the store is back
