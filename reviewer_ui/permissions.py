"""Who may do what in the reviewer UI: the permission matrix, and the checks every
handler calls on every request (SECURITY_CHECKLIST AC-01, AC-02, AC-03, AC-16).

Function-level matrix (``can_act(user, action)``; ``ACTIONS`` below is the same table as
data, and tests/reviewer_ui/test_permissions.py is generated from it):

=====================  =====  =======  ==========  =======  =======
action                 admin  officer  supervisor  partner  auditor
=====================  =====  =======  ==========  =======  =======
report.view            all    own*     unit*       shared   all
report.create          yes    yes      yes         -        -
report.assign          yes    -        unit*       -        -
link.issue / revoke    yes    own*     unit*       -        -
item.view              all    own*     unit*       shared   all
item.media             all    own*     unit*       shared   all
item.download          yes    own*     unit*       shared+  -
triage                 yes    own*     unit*       -        -
note.add / tag.add     yes    own*     unit*       -        -
share.create / revoke  yes    own*     unit*       -        -
export                 yes    own*     unit*       -        -
audit.read             yes    -        -           -        yes
admin.users            yes    -        -           -        -
admin.links            yes    -        -           -        -
retention.set          yes    own*     unit*       -        -
hold.add               yes    own*     unit*       -        -
hold.remove            yes    -        -           -        -
retention.review       yes    -        -           -        -
=====================  =====  =======  ==========  =======  =======

Data-level rules (``visible_reports_query``, ``can_view_report``, ``can_view_item``):

* ``all``    - admins and auditors see every report and item (auditors read, never change).
* ``own*``   - an officer sees the reports they own or are assigned to
  (``ReportAssignment``), and, when ``settings.officer_unit_access`` is on, every report
  of their own unit.
* ``unit*``  - a supervisor sees what an officer would, and every report of their own unit
  (``Report.unit == User.unit``; a supervisor without a unit has no unit's reports). They
  assign (``report.assign``) only their unit's reports, and only to officers and
  supervisors of that unit; an admin assigns any report to any officer or supervisor.
  Officers do not assign, not even on reports they own: assignment grants access to
  evidence, and the unit's supervisor is the one accountable for who has it (AC-01).
  ``_staff_scope`` is the one place these scopes are written; the list query and the
  single-row check both use it.
* ``shared`` - a partner sees only items reachable through a *live* share (not revoked,
  not expired) granted to their organisation or to them personally, either of that item
  or of its whole report; and among those only items that passed the virus scan
  (``PARTNER_STATES``): infected, unscannable, rejected or unscanned items are never
  shown to a partner. A partner sees a report only as the container of such items.
* ``shared+`` - a partner downloads an original only through a live share whose
  ``allow_download`` is set.
* Infected items: their original is downloadable only by an admin (the forensic role).

Every refusal is ``deny(request, ...)``: the same 404 page whether the thing does not
exist or exists but is not yours (no existence oracle), and an ``access.denied`` custody
event. Unauthenticated requests never reach these checks: ``current_user`` sends them
to /login first.

Typical use in a handler (one thread hop: the session check, then ``load``)::

    def load() -> EvidenceItem:
        with ctx.db.read() as session:                 # current_user inside: or LoginRequired
            return permissions.require_item(request, session, item_id)

    item = await ctx.run_sync(load)
    # require_item raises Denied (-> deny(): 404 + access.denied) when not visible

Passing ``now``: share expiry is judged at ``now``; handlers pass ``ctx.clock()``
(``require_*`` do it for you).
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, and_, false, or_
from sqlalchemy.orm.util import identity_key
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar
from starlette.requests import Request
from starlette.responses import Response

from reviewer_ui import audit, context
from storage.models import EvidenceItem, Report, ReportAssignment, Role, Share, User, utcnow

# States an item may be in for a partner to see it at all: it has been scanned clean.
PARTNER_STATES = frozenset({"clean", "processing", "ready", "failed"})

ALL = "all"
OWN = "own"
UNIT = "unit"
SHARED = "shared"
SHARED_DOWNLOAD = "shared+"
YES = "yes"
NO = "-"

# The matrix above as data. Keys are actions; values map role -> cell.
ACTIONS: dict[str, dict[str, str]] = {
    "report.view": {"admin": ALL, "officer": OWN, "supervisor": UNIT, "partner": SHARED, "auditor": ALL},
    "report.create": {"admin": YES, "officer": YES, "supervisor": YES, "partner": NO, "auditor": NO},
    "report.assign": {"admin": YES, "officer": NO, "supervisor": UNIT, "partner": NO, "auditor": NO},
    "link.issue": {"admin": YES, "officer": OWN, "supervisor": UNIT, "partner": NO, "auditor": NO},
    "link.revoke": {"admin": YES, "officer": OWN, "supervisor": UNIT, "partner": NO, "auditor": NO},
    "item.view": {"admin": ALL, "officer": OWN, "supervisor": UNIT, "partner": SHARED, "auditor": ALL},
    "item.media": {"admin": ALL, "officer": OWN, "supervisor": UNIT, "partner": SHARED, "auditor": ALL},
    "item.download": {"admin": YES, "officer": OWN, "supervisor": UNIT, "partner": SHARED_DOWNLOAD, "auditor": NO},
    "triage": {"admin": YES, "officer": OWN, "supervisor": UNIT, "partner": NO, "auditor": NO},
    "note.add": {"admin": YES, "officer": OWN, "supervisor": UNIT, "partner": NO, "auditor": NO},
    "tag.add": {"admin": YES, "officer": OWN, "supervisor": UNIT, "partner": NO, "auditor": NO},
    "share.create": {"admin": YES, "officer": OWN, "supervisor": UNIT, "partner": NO, "auditor": NO},
    "share.revoke": {"admin": YES, "officer": OWN, "supervisor": UNIT, "partner": NO, "auditor": NO},
    "export": {"admin": YES, "officer": OWN, "supervisor": UNIT, "partner": NO, "auditor": NO},
    "audit.read": {"admin": YES, "officer": NO, "supervisor": NO, "partner": NO, "auditor": YES},
    "admin.users": {"admin": YES, "officer": NO, "supervisor": NO, "partner": NO, "auditor": NO},
    "admin.links": {"admin": YES, "officer": NO, "supervisor": NO, "partner": NO, "auditor": NO},
    # Retention and legal hold (issue 14; storage.retention). MoPI puts disposal decisions
    # with the force's review function, not the investigator: an officer (a supervisor,
    # on their unit's) may keep their
    # own report's evidence LONGER (set a later date; storage refuses an earlier one,
    # ERR_RETENTION_SHORTEN) and may place a hold at once when they learn evidence is
    # needed, but only an admin may bring a date forward or release a hold, both of which
    # let evidence be destroyed. Threat: an officer destroying evidence early, e.g. in a
    # complaint against themselves. Auditors read dates and holds in the ledger.
    "retention.set": {"admin": YES, "officer": OWN, "supervisor": UNIT, "partner": NO, "auditor": NO},
    "hold.add": {"admin": YES, "officer": OWN, "supervisor": UNIT, "partner": NO, "auditor": NO},
    "hold.remove": {"admin": YES, "officer": NO, "supervisor": NO, "partner": NO, "auditor": NO},
    "retention.review": {"admin": YES, "officer": NO, "supervisor": NO, "partner": NO, "auditor": NO},
}

# Roles whose reach is "the reports they own, are assigned to, or (by unit) may see":
# the force's own case workers. The ones a report can be assigned to.
CASEWORKER_ROLES = frozenset({Role.OFFICER.value, Role.SUPERVISOR.value})


class LoginRequired(Exception):
    """No signed-in, MFA-verified user: the app answers with a redirect to /login (HTML)
    or 401 (other requests)."""


class Denied(Exception):
    """Raise from a handler (or a function it calls) to refuse: the app turns it into
    ``deny(request, ...)``: the uniform 404 and an ``access.denied`` custody event."""

    def __init__(self, subject: str = "", *, report_id: str | None = None, item_id: str | None = None,
                 reason: str = "") -> None:
        super().__init__(subject)
        self.subject = subject
        self.report_id = report_id
        self.item_id = item_id
        self.reason = reason


# --- who is asking ------------------------------------------------------------------


def current_user(request: Request) -> User:
    """The signed-in user of this request (password and TOTP both passed, session live,
    account enabled), or ``LoginRequired``. Only reads the verdict of the request's
    session check, which runs at the start of its first ``ctx.run_sync`` (or
    ``ctx.check_session()``): called before that, it finds nobody (fail closed)."""
    user = request.scope.get("state", {}).get("user")
    if user is None:
        raise LoginRequired()
    assert isinstance(user, User)
    return user


def optional_user(request: Request) -> User | None:
    """Like ``current_user`` but ``None`` instead of ``LoginRequired``."""
    user = request.scope.get("state", {}).get("user")
    return user if isinstance(user, User) else None


STEP_UP_SECONDS = 300


def recently_verified(request: Request, max_age_seconds: int = STEP_UP_SECONDS) -> bool:
    """Did this session pass TOTP in the last ``max_age_seconds``? For sensitive actions
    (an original download, a share to a partner: SECURITY_CHECKLIST AC-13), when it did
    not, send the user to ``step_up_url(back)`` and act only after they return."""
    row = request.scope.get("state", {}).get("staff_session")
    if row is None or not row.mfa_passed:
        return False
    age = (context.get(request).clock() - row.created_at).total_seconds()
    return bool(0 <= age <= max_age_seconds)


def step_up_url(back_to: str) -> str:
    """Where to send a user to confirm with a fresh TOTP code; they come back to
    ``back_to`` (a local path) afterwards."""
    return "/reauth?" + urlencode({"next": back_to})


# --- function level -----------------------------------------------------------------


def can_act(user: User, action: str) -> bool:
    """May ``user``'s role do ``action`` at all (the matrix above)? A cell of ``own*`` or
    ``shared`` means "yes, on the reports/items the data-level checks let them see", so
    callers combine this with ``can_view_report``/``can_view_item``. Unknown actions and
    unknown roles are refused (fail closed, AC-16)."""
    if user.disabled:
        return False
    return ACTIONS.get(action, {}).get(str(user.role), NO) != NO


# --- data level ---------------------------------------------------------------------


def _live_share_clause(user: User, now: dt.datetime) -> ColumnElement[bool]:
    grantee: list[ColumnElement[bool]] = [col(Share.partner_user_id) == user.id]
    if user.org_id:
        grantee.append(col(Share.partner_org_id) == user.org_id)
    return and_(
        or_(*grantee),
        col(Share.revoked_at).is_(None),
        col(Share.expires_at) > now,
    )


def _staff_scope(user: User, unit_access: bool) -> ColumnElement[bool]:
    """THE definition of which reports an officer (``own*``) or a supervisor (``unit*``)
    reaches, as a condition on ``Report``: owner, assignee, and their unit's reports for a
    supervisor (or for an officer when the force's ``officer_unit_access`` allows it).
    The list query and the single-row check below both use this one expression, so the
    two can never disagree about who sees a report (AC-01). A user without a unit reaches
    no unit's reports: ``Report.unit == NULL`` is never true."""
    assigned = select(col(ReportAssignment.report_id)).where(
        col(ReportAssignment.user_id) == user.id, col(ReportAssignment.report_id) == col(Report.id))
    clauses: list[ColumnElement[bool]] = [col(Report.owner_id) == user.id, assigned.exists()]
    if user.unit and (str(user.role) == Role.SUPERVISOR or unit_access):
        clauses.append(col(Report.unit) == user.unit)
    return or_(*clauses)


def visible_items_query(user: User, *, now: dt.datetime | None = None,
                        unit_access: bool = False) -> SelectOfScalar[str]:
    """``select(col(EvidenceItem.id))`` of every item ``user`` may see. Use it as a subquery:
    ``.where(col(EvidenceItem.id).in_(visible_items_query(user, now=...)))``."""
    now = now or utcnow()
    role = str(user.role)
    base = select(col(EvidenceItem.id))
    if user.disabled:
        return base.where(false())
    if role in (Role.ADMIN, Role.AUDITOR):
        return base
    if role in CASEWORKER_ROLES:
        # Correlated EXISTS (one primary-key probe of the item's report), not
        # `report_id IN (...)`: SQLite materialises the IN list, every report the officer
        # can see, on every check (48 ms at 10,000 reports; benchmarks/review.py).
        reports = visible_reports_query(user, now=now, unit_access=unit_access)
        return base.where(reports.where(col(Report.id) == col(EvidenceItem.report_id)).exists())
    if role == Role.PARTNER:
        live = _live_share_clause(user, now)
        item_shared = select(col(Share.item_id)).where(live, col(Share.item_id).is_not(None))
        report_shared = select(col(Share.report_id)).where(live, col(Share.item_id).is_(None))
        return base.where(
            col(EvidenceItem.state).in_(PARTNER_STATES),
            or_(col(EvidenceItem.id).in_(item_shared), col(EvidenceItem.report_id).in_(report_shared)),
        )
    return base.where(false())


def visible_reports_query(user: User, *, now: dt.datetime | None = None,
                          unit_access: bool = False) -> SelectOfScalar[str]:
    """``select(col(Report.id))`` of every report ``user`` may see (see the module docstring).
    Use as a subquery: ``.where(col(Report.id).in_(visible_reports_query(user, now=ctx.clock(),
    unit_access=ctx.settings.officer_unit_access)))``."""
    now = now or utcnow()
    role = str(user.role)
    base = select(col(Report.id))
    if user.disabled:
        return base.where(false())
    if role in (Role.ADMIN, Role.AUDITOR):
        return base
    if role in CASEWORKER_ROLES:
        return base.where(_staff_scope(user, unit_access))
    if role == Role.PARTNER:
        items = visible_items_query(user, now=now)
        return base.where(col(Report.id).in_(select(col(EvidenceItem.report_id)).where(col(EvidenceItem.id).in_(items))))
    return base.where(false())


# The single-row checks below say exactly what ``visible_*_query`` say, but as a few
# primary-key / indexed probes for the one row in hand, so a check costs the same at
# 100,000 items as at 10 (tests/reviewer_ui/test_permissions.py holds the two to agree).


def _partner_sees_item(session: Session, user: User, item: EvidenceItem, now: dt.datetime) -> bool:
    if item.state not in PARTNER_STATES:
        return False
    live = _live_share_clause(user, now)
    by_item = select(Share.id).where(col(Share.item_id) == item.id, live).limit(1)
    if session.exec(by_item).first() is not None:
        return True
    by_report = select(Share.id).where(col(Share.report_id) == item.report_id, col(Share.item_id).is_(None),
                                       live).limit(1)
    return session.exec(by_report).first() is not None


def live_shares_of_item(session: Session, user: User, item: EvidenceItem, now: dt.datetime) -> list[Share]:
    """The live shares through which partner ``user`` reaches ``item`` (of the item, or of
    its whole report): what they grant (download, contact, location) is the union of
    these. Empty for an item a partner may not see."""
    if item.state not in PARTNER_STATES:
        return []
    live = _live_share_clause(user, now)
    return list(session.exec(select(Share).where(
        live, col(Share.report_id) == item.report_id,
        or_(col(Share.item_id) == item.id, col(Share.item_id).is_(None)),
    ).limit(100)))


def _partner_sees_report(session: Session, user: User, report: Report, now: dt.datetime) -> bool:
    live = _live_share_clause(user, now)
    # A live share of one of its items that passed the scan...
    item_share = (select(EvidenceItem.id)
                  .where(col(EvidenceItem.report_id) == report.id, col(EvidenceItem.state).in_(PARTNER_STATES),
                         select(Share.id).where(col(Share.item_id) == col(EvidenceItem.id), live).exists())
                  .limit(1))
    if session.exec(item_share).first() is not None:
        return True
    # ...or a live share of the whole report, once one of its items passed the scan.
    report_share = select(Share.id).where(col(Share.report_id) == report.id, col(Share.item_id).is_(None),
                                          live).limit(1)
    if session.exec(report_share).first() is None:
        return False
    clean = select(EvidenceItem.id).where(col(EvidenceItem.report_id) == report.id,
                                          col(EvidenceItem.state).in_(PARTNER_STATES)).limit(1)
    return session.exec(clean).first() is not None


def _officer_sees(session: Session, user: User, report: Report, unit_access: bool) -> bool:
    # The scope of ``_staff_scope``, asked of this one report: a primary-key probe.
    probe = select(col(Report.id)).where(col(Report.id) == report.id, _staff_scope(user, unit_access)).limit(1)
    return session.exec(probe).first() is not None


def can_assign(session: Session, user: User, report: Report) -> bool:
    """May ``user`` change who owns or is assigned to ``report``? Admins: any report. A
    supervisor: only a report of their own unit (not one of another unit they merely own
    or are assigned to: handing out access is the report's unit supervisor's call)."""
    if not can_act(user, "report.assign"):
        return False
    if str(user.role) == Role.ADMIN:
        return True
    return bool(user.unit) and report.unit == user.unit


def can_view_report(session: Session, user: User, report: Report, *, now: dt.datetime | None = None,
                    unit_access: bool = False) -> bool:
    """May ``user`` see ``report`` (its page, its list of visible items)?"""
    role = str(user.role)
    if user.disabled:
        return False
    if role in (Role.ADMIN, Role.AUDITOR):
        return True
    if role in CASEWORKER_ROLES:
        return _officer_sees(session, user, report, unit_access)
    if role == Role.PARTNER:
        return _partner_sees_report(session, user, report, now or utcnow())
    return False


def can_view_item(session: Session, user: User, item: EvidenceItem, *, now: dt.datetime | None = None,
                  unit_access: bool = False) -> bool:
    """May ``user`` see ``item`` (its page, metadata, derivatives, notes)?"""
    role = str(user.role)
    if user.disabled:
        return False
    if role in (Role.ADMIN, Role.AUDITOR):
        return True
    if role in CASEWORKER_ROLES:
        report = session.get(Report, item.report_id)
        return report is not None and _officer_sees(session, user, report, unit_access)
    if role == Role.PARTNER:
        return _partner_sees_item(session, user, item, now or utcnow())
    return False


def can_change_report(session: Session, user: User, report: Report, action: str, *,
                      now: dt.datetime | None = None, unit_access: bool = False) -> bool:
    """``can_act(user, action)`` and ``can_view_report``: e.g. ``action="link.issue"``."""
    return can_act(user, action) and can_view_report(session, user, report, now=now, unit_access=unit_access)


def can_download_original(session: Session, user: User, item: EvidenceItem, *, now: dt.datetime | None = None,
                          unit_access: bool = False) -> bool:
    """May ``user`` download ``item``'s original? (The handler still asks for a reason and
    records it.) Infected originals: admins only. Partners: a live share of the item or its
    report with ``allow_download``."""
    if not can_act(user, "item.download"):
        return False
    if not can_view_item(session, user, item, now=now, unit_access=unit_access):
        return False
    if item.state == "purged":
        return False
    if item.state == "infected" and str(user.role) != Role.ADMIN:
        return False
    if str(user.role) == Role.PARTNER:
        now = now or utcnow()
        q = select(col(Share.id)).where(
            _live_share_clause(user, now),
            col(Share.allow_download).is_(True),
            or_(col(Share.item_id) == item.id, and_(col(Share.item_id).is_(None), col(Share.report_id) == item.report_id)),
        )
        return session.exec(q).first() is not None
    return True


# --- request-level helpers (use these in handlers) ----------------------------------


def require_report(request: Request, session: Session, report_id: str, action: str = "report.view") -> Report:
    """The report ``report_id`` if the signed-in user may do ``action`` on it, else
    ``Denied`` (-> uniform 404 + access.denied). Call inside ``ctx.db.read()``/``write()``."""
    ctx = context.get(request)
    user = current_user(request)
    report = session.get(Report, report_id) if report_id and len(report_id) <= 64 else None
    if report is None or not can_act(user, action) or not can_view_report(
        session, user, report, now=ctx.clock(), unit_access=ctx.settings.officer_unit_access
    ):
        raise Denied(f"report:{report_id[:64]}", report_id=report.id if report else None, reason=action)
    return report


def _item_with_report(session: Session, item_id: str) -> EvidenceItem | None:
    """The item, with its report loaded by the same statement: the officer check and
    every page that shows an item need the report, and on PostgreSQL a second statement
    is a second round trip. An item this session already holds costs no statement."""
    held = session.identity_map.get(identity_key(EvidenceItem, item_id))
    if isinstance(held, EvidenceItem):
        return held
    found = session.exec(
        select(EvidenceItem, Report).join(Report, col(Report.id) == col(EvidenceItem.report_id))
        .where(col(EvidenceItem.id) == item_id)
    ).first()
    return found[0] if found is not None else None


def require_item(request: Request, session: Session, item_id: str, action: str = "item.view") -> EvidenceItem:
    """The item ``item_id`` if the signed-in user may do ``action`` on it, else ``Denied``.
    ``action="item.download"`` also applies ``can_download_original``."""
    ctx = context.get(request)
    user = current_user(request)
    now = ctx.clock()
    unit = ctx.settings.officer_unit_access
    item = _item_with_report(session, item_id) if item_id and len(item_id) <= 64 else None
    ok = item is not None and can_act(user, action) and can_view_item(session, user, item, now=now, unit_access=unit)
    if ok and action == "item.download":
        assert item is not None
        ok = can_download_original(session, user, item, now=now, unit_access=unit)
    if not ok:
        raise Denied(f"item:{item_id[:64]}", report_id=item.report_id if item else None,
                     item_id=item.id if item else None, reason=action)
    assert item is not None
    return item


async def deny(request: Request, subject: str = "", *, report_id: str | None = None, item_id: str | None = None,
               reason: str = "") -> Response:
    """Record an ``access.denied`` custody event and return THE uniform 404 response,
    identical whether or not the thing exists (AC-01). If the ledger cannot be written the
    answer is a 503 (fail closed, AU-10): a refusal we cannot record is still a refusal."""
    ctx = context.get(request)
    await audit.record(ctx, request, "access.denied", report_id=report_id, item_id=item_id,
                       detail={"subject": subject[:100], "reason": reason[:100],
                               "method": request.method, "path": request.url.path[:200]})
    return not_found_response(request)


def not_found_response(request: Request) -> Response:
    """The one 404 every refusal and every missing thing gets."""
    return context.get(request).render(request, "not_found.html", status_code=404)
