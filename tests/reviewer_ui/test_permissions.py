"""The permission matrix (reviewer_ui.permissions): function level from its table, data
level per role and share state, and over HTTP the uniform 404 + access.denied
(SECURITY_CHECKLIST AC-01, AC-02, AC-03, AC-16)."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlmodel import select

from reviewer_ui import permissions
from reviewer_ui.permissions import ACTIONS, NO
from storage.models import EvidenceItem, Report, ReportAssignment, Role, Share, User
from storage.reports import create_report
from tests.fixtures.reviewer import ReviewHarness

ROLES = [r.value for r in Role]
README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
READ_ONLY_ACTIONS = {"report.view", "item.view", "item.media", "audit.read"}


def fake_user(role: str, **kw: object) -> User:
    return User(email=f"{role}@x.example", role=role, **kw)  # type: ignore[arg-type]


def readme_matrix() -> dict[str, dict[str, str]]:
    """The permission table of the README ("Access: who sees what") as action -> role ->
    cell. A row ``link.issue / revoke`` stands for ``link.issue`` and ``link.revoke``;
    ``note.add / tag.add`` for both actions named. ``own*`` is ``own`` with a footnote."""
    section = README.split("## Access: who sees what", 1)[1]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| action"))
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), lines[start:]))
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header[0] == "action", header
    matrix: dict[str, dict[str, str]] = {}
    for row in rows[2:]:
        cells = [c.strip().removesuffix("*") for c in row.strip("|").split("|")]
        first, *rest = (part.strip() for part in cells[0].split("/"))
        prefix = first.split(".", 1)[0]
        for action in [first, *(r if "." in r else f"{prefix}.{r}" for r in rest)]:
            matrix[action] = dict(zip(header[1:], cells[1:], strict=True))
    return matrix


README_MATRIX = readme_matrix()


def test_the_readme_table_names_every_action_and_role_of_the_code() -> None:
    assert set(README_MATRIX) == set(ACTIONS)
    for action, cells in README_MATRIX.items():
        assert set(cells) == set(ROLES), action


@pytest.mark.parametrize("action", sorted(README_MATRIX))
@pytest.mark.parametrize("role", ROLES)
def test_function_level_matrix_is_what_the_table_says(role: str, action: str) -> None:
    # The README is what operators and auditors read (AC-01): the code must grant exactly
    # what it promises, cell by cell, in both directions.
    cell = README_MATRIX[action][role]
    assert permissions.can_act(fake_user(role), action) is (cell != NO)
    assert ACTIONS.get(action, {}).get(role) == cell


def test_the_table_covers_every_role_for_every_action() -> None:
    for action, cells in ACTIONS.items():
        assert set(cells) == set(ROLES), action


def test_auditors_change_nothing_and_only_admins_administer() -> None:
    auditor = fake_user("auditor")
    for action in ACTIONS:
        if action not in READ_ONLY_ACTIONS:
            assert not permissions.can_act(auditor, action), action
    for role in ("officer", "supervisor", "partner", "auditor"):
        assert not permissions.can_act(fake_user(role), "admin.users")
        assert not permissions.can_act(fake_user(role), "admin.links")
    for action in ("triage", "note.add", "share.create", "link.issue", "report.create", "export"):
        assert not permissions.can_act(fake_user("partner"), action)


def test_unknown_actions_roles_and_disabled_users_are_refused() -> None:
    assert not permissions.can_act(fake_user("admin"), "no.such.action")
    assert not permissions.can_act(fake_user("superuser"), "report.view")
    assert not permissions.can_act(fake_user("admin", disabled=True), "report.view")


@dataclass
class World:
    review: ReviewHarness
    owner: User
    assigned: User
    unit_mate: User
    stranger: User
    supervisor: User
    supervisor_south: User
    supervisor_no_unit: User
    partner: User
    partner_colleague: User
    other_partner: User
    admin: User
    auditor: User
    report: Report
    other_report: Report
    ready: EvidenceItem
    sibling: EvidenceItem
    infected: EvidenceItem
    elsewhere: EvidenceItem


def _item(s: object, report: Report, state: str) -> EvidenceItem:
    item = EvidenceItem(report_id=report.id, blob_key=f"originals/{report.id}{state}", sha256="0" * 64, state=state)
    s.add(item)  # type: ignore[attr-defined]
    return item


@pytest.fixture
def world(review: ReviewHarness) -> World:
    def user(role: str, **kw: str) -> User:
        return review.user(review.make_user(role, **kw))  # type: ignore[arg-type]

    owner = user("officer", unit="north")
    assigned = user("officer")
    unit_mate = user("officer", unit="north")
    stranger = user("officer", unit="south")
    supervisor = user("supervisor", unit="north")
    supervisor_south = user("supervisor", unit="south")
    supervisor_no_unit = user("supervisor")
    partner = user("partner", org="CPS")
    partner_colleague = user("partner", org="CPS")
    other_partner = user("partner", org="Council")
    admin, auditor = user("admin"), user("auditor")
    db = review.db
    now = review.clock()
    with db.write() as s:
        report = create_report(db, s, "RTC/1", "rtc", owner_id=owner.id, unit="north", actor="test")
        other = create_report(db, s, "CRIME/2", "crime", owner_id=stranger.id, unit="south", actor="test")
        s.add(ReportAssignment(report_id=report.id, user_id=assigned.id))
        ready, sibling, infected = _item(s, report, "ready"), _item(s, report, "ready"), _item(s, report, "infected")
        elsewhere = _item(s, other, "ready")
        s.flush()
        s.add(Share(report_id=report.id, item_id=ready.id, partner_org_id=partner.org_id, allow_download=False,
                    created_by=owner.id, expires_at=now + dt.timedelta(days=3)))
    return World(review, owner, assigned, unit_mate, stranger, supervisor, supervisor_south, supervisor_no_unit,
                 partner, partner_colleague, other_partner, admin,
                 auditor, report, other, ready, sibling, infected, elsewhere)


def visible_items(w: World, user: User, *, unit_access: bool = False) -> set[str]:
    with w.review.db.read() as s:
        ids = s.exec(permissions.visible_items_query(user, now=w.review.clock(), unit_access=unit_access)).all()
    return set(ids)


def visible_reports(w: World, user: User, *, unit_access: bool = False) -> set[str]:
    with w.review.db.read() as s:
        return set(s.exec(permissions.visible_reports_query(user, now=w.review.clock(), unit_access=unit_access)).all())


def test_data_level_visibility_per_role(world: World) -> None:
    w = world
    everything = {w.ready.id, w.sibling.id, w.infected.id, w.elsewhere.id}
    assert visible_items(w, w.admin) == everything
    assert visible_items(w, w.auditor) == everything
    assert visible_items(w, w.owner) == {w.ready.id, w.sibling.id, w.infected.id}
    assert visible_items(w, w.assigned) == {w.ready.id, w.sibling.id, w.infected.id}
    assert visible_items(w, w.stranger) == {w.elsewhere.id}
    assert visible_reports(w, w.stranger) == {w.other_report.id}
    # A supervisor sees their unit's reports whatever the setting; one without a unit sees
    # none but their own (none here).
    assert visible_reports(w, w.supervisor) == {w.report.id}
    assert visible_items(w, w.supervisor) == {w.ready.id, w.sibling.id, w.infected.id}
    assert visible_reports(w, w.supervisor_south) == {w.other_report.id}
    assert visible_reports(w, w.supervisor_no_unit) == set()
    # Unit access only when the force's setting allows it.
    assert visible_reports(w, w.unit_mate) == set()
    assert visible_reports(w, w.unit_mate, unit_access=True) == {w.report.id}
    # Partners: the shared item only (not its sibling, not the infected one), for anyone
    # in the organisation, and nothing for another agency.
    assert visible_items(w, w.partner) == {w.ready.id}
    assert visible_items(w, w.partner_colleague) == {w.ready.id}
    assert visible_reports(w, w.partner) == {w.report.id}
    assert visible_items(w, w.other_partner) == set()
    assert visible_reports(w, w.other_partner) == set()


def test_a_report_share_never_reaches_infected_items(world: World) -> None:
    w = world
    with w.review.db.write() as s:
        s.add(Share(report_id=w.report.id, item_id=None, partner_user_id=w.other_partner.id, allow_download=True,
                    created_by=w.owner.id, expires_at=w.review.clock() + dt.timedelta(days=1)))
    assert visible_items(w, w.other_partner) == {w.ready.id, w.sibling.id}
    with w.review.db.read() as s:
        assert permissions.can_download_original(s, w.other_partner, w.sibling, now=w.review.clock())
        assert not permissions.can_download_original(s, w.other_partner, w.infected, now=w.review.clock())
        assert not permissions.can_view_item(s, w.other_partner, w.infected, now=w.review.clock())


def test_share_expiry_and_revocation_act_on_the_next_check(world: World) -> None:
    w = world
    assert visible_items(w, w.partner) == {w.ready.id}
    w.review.clock.advance(days=3, seconds=1)
    assert visible_items(w, w.partner) == set()
    w.review.clock.advance(days=-3, seconds=-1)
    with w.review.db.write() as s:
        share = s.exec(select(Share).where(Share.item_id == w.ready.id)).one()
        share.revoked_at = w.review.clock()
        s.add(share)
    assert visible_items(w, w.partner) == set()


def test_original_downloads(world: World) -> None:
    w = world
    now = w.review.clock()
    with w.review.db.read() as s:
        assert permissions.can_download_original(s, w.owner, w.ready, now=now)
        assert not permissions.can_download_original(s, w.owner, w.infected, now=now)  # forensic role only
        assert permissions.can_download_original(s, w.admin, w.infected, now=now)
        assert not permissions.can_download_original(s, w.auditor, w.ready, now=now)
        assert not permissions.can_download_original(s, w.partner, w.ready, now=now)  # share without download
        assert not permissions.can_download_original(s, w.stranger, w.ready, now=now)


@pytest.mark.parametrize("who", ["officer without access", "partner of the same agency, item not shared",
                                 "partner of another agency"])
def test_refusals_over_http_are_a_uniform_404_and_are_recorded(world: World, who: str) -> None:
    w = world
    review = w.review
    if who.startswith("officer"):
        nosy = review.make_user("officer", email="nosy@force.example")
        forbidden = [f"/reports/{w.report.id}", f"/items/{w.ready.id}", f"/items/{w.infected.id}"]
    elif who.startswith("partner of the same"):
        nosy = review.make_user("partner", email="nosy@force.example", org="CPS")
        forbidden = [f"/items/{w.sibling.id}", f"/items/{w.infected.id}", f"/reports/{w.other_report.id}"]
    else:
        nosy = review.make_user("partner", email="nosy@force.example", org="Council")
        forbidden = [f"/reports/{w.report.id}", f"/items/{w.ready.id}", f"/items/{w.sibling.id}"]
    client = review.client()
    review.signed_in_session(client, nosy)
    before = len(review.events("access.denied"))
    missing = ["/reports/" + "f" * 32, "/items/" + "f" * 32]
    bodies: dict[str, set[str]] = {}
    for path in forbidden + missing:
        r = client.get(path)
        assert r.status_code == 404, path
        bodies.setdefault(path.split("/")[1], set()).add(r.text)
    # Existing-but-forbidden looks exactly like missing.
    assert all(len(found) == 1 for found in bodies.values())
    denied = review.events("access.denied")[before:]
    assert len(denied) == len(forbidden) + len(missing)
    assert all(e.actor == "nosy@force.example" for e in denied)
    assert {e.item_id for e in denied} >= {p.split("/")[2] for p in forbidden if p.startswith("/items/")}


@pytest.mark.parametrize("role", ["officer", "partner", "auditor"])
def test_admin_pages_are_a_recorded_404_for_everyone_but_admins(review: ReviewHarness, role: str) -> None:
    staff = review.make_user(role)
    client = review.client()
    review.signed_in_session(client, staff)
    for path in ("/admin", "/admin/users", "/admin/links"):
        assert client.get(path).status_code == 404
    token = client.get("/no-such-page").text
    from tests.fixtures.reviewer import csrf_of

    r = client.post("/admin/users", data={"csrf_token": csrf_of(token), "email": "x@force.example", "role": "admin"})
    assert r.status_code == 404
    denied = review.events("access.denied")
    assert len(denied) == 4 and all(e.actor == staff.email for e in denied)
    with review.db.read() as s:
        assert s.exec(select(User).where(User.email == "x@force.example")).first() is None


def test_anonymous_requests_never_reach_a_page(review: ReviewHarness) -> None:
    client = review.client()
    for path in ("/admin/users", "/admin/links", "/reports"):
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/login"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_refusal_that_cannot_be_recorded_is_still_a_refusal(review: ReviewHarness) -> None:
    """If the custody ledger cannot be written, the answer is 503, never the page (AU-10)."""
    from sqlalchemy import text

    officer = review.make_user("officer")
    client = review.client()
    review.signed_in_session(client, officer)
    with review.db.write() as s:
        s.exec(text("ALTER TABLE custody_event RENAME TO custody_event_away"))  # type: ignore[call-overload]
    r = client.get("/admin/users")
    assert r.status_code == 503
    assert "Users" not in r.text
    # A failed sign-in that cannot be recorded does not sign anyone in either.
    other = review.client(ip="192.0.2.200")
    assert review.password_step(other, officer, password="wrong password entirely").status_code == 503


def test_single_row_checks_agree_with_the_list_queries(world: World) -> None:
    """``can_view_item``/``can_view_report`` (fast probes) and ``visible_*_query`` (lists)
    must say the same thing for every user, item and report, across share states."""
    w = world
    now = w.review.clock()
    with w.review.db.write() as s:
        s.add(Share(report_id=w.other_report.id, item_id=None, partner_org_id=w.other_partner.org_id,
                    allow_download=False, created_by=w.owner.id, expires_at=now + dt.timedelta(days=1)))
        s.add(Share(report_id=w.report.id, item_id=w.sibling.id, partner_user_id=w.partner_colleague.id,
                    allow_download=False, created_by=w.owner.id, expires_at=now - dt.timedelta(seconds=1)))
        s.add(Share(report_id=w.report.id, item_id=w.infected.id, partner_org_id=w.other_partner.org_id,
                    allow_download=True, created_by=w.owner.id, expires_at=now + dt.timedelta(days=1)))
    users = [w.owner, w.assigned, w.unit_mate, w.stranger, w.supervisor, w.supervisor_south, w.supervisor_no_unit,
             w.partner, w.partner_colleague, w.other_partner,
             w.admin, w.auditor]
    items = [w.ready, w.sibling, w.infected, w.elsewhere]
    reports = [w.report, w.other_report]
    for unit_access in (False, True):
        for user in users:
            seen_items = visible_items(w, user, unit_access=unit_access)
            seen_reports = visible_reports(w, user, unit_access=unit_access)
            with w.review.db.read() as s:
                for item in items:
                    assert permissions.can_view_item(s, user, item, now=now, unit_access=unit_access) is (
                        item.id in seen_items), (user.email, item.state, unit_access)
                for report in reports:
                    assert permissions.can_view_report(s, user, report, now=now, unit_access=unit_access) is (
                        report.id in seen_reports), (user.email, report.reference, unit_access)


def test_only_admins_and_the_units_supervisor_assign(world: World) -> None:
    """Assignment hands out access to evidence (AC-01): an admin assigns any report, a
    supervisor only their own unit's, and an officer never, not even the owner."""
    w = world
    with w.review.db.write() as s:
        s.add(ReportAssignment(report_id=w.other_report.id, user_id=w.supervisor.id))
    with w.review.db.read() as s:
        assert permissions.can_assign(s, w.admin, w.report) and permissions.can_assign(s, w.admin, w.other_report)
        assert permissions.can_assign(s, w.supervisor, w.report)
        # Assigned to a report of another unit: may work it, may not hand it out.
        assert permissions.can_view_report(s, w.supervisor, w.other_report)
        assert not permissions.can_assign(s, w.supervisor, w.other_report)
        assert not permissions.can_assign(s, w.supervisor_no_unit, w.report)
        for user in (w.owner, w.assigned, w.auditor, w.partner):
            assert not permissions.can_assign(s, user, w.report), user.email
