"""Who works a report, in the reviewer UI (issue 15 item 1): the assignment panel of the
report page (``_assignment.html``), assigning and reassigning, and "My reports".

* ``POST /reports/{id}/assign`` (``email``, ``as_owner``): an admin on any report, a
  supervisor on their unit's reports (``permissions.can_assign``), to an enabled officer or
  supervisor (of the report's unit when a supervisor assigns). Officers do not assign, not
  even the owner: assignment grants access to evidence, the unit's supervisor answers for
  who has it (AC-01). Anyone else gets the uniform 404 + ``access.denied``.
* ``POST /reports/{id}/unassign`` (``user_id``): the same people take an assignee off.
* ``GET /my-reports``: the reports the signed-in officer or supervisor owns or is assigned
  to, with the evidence received since they last opened each report and the evidence
  waiting for triage (``storage.assignments.queue``); opening a report's page marks it
  seen (``mark_seen``, called by ``reports.report_page``).

Every change is a custody event (``report.assigned``, ``report.unassigned``,
``report.owner_changed``) written in the same transaction by ``storage.assignments``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from reviewer_ui import audit, context, permissions
from storage import assignments
from storage.errors import DomainError
from storage.models import Report, Role, User

CANDIDATE_LIMIT = 500


@dataclass
class Panel:
    """What the report page shows of who works the report."""

    unit: str | None
    owner: str | None
    assignees: list[User]
    can_assign: bool
    candidates: list[tuple[str, str]] = field(default_factory=list)  # (email, label)


def candidates(session: Session, user: User, report: Report) -> list[tuple[str, str]]:
    """Whom ``user`` may assign ``report`` to: enabled officers and supervisors; a
    supervisor chooses among those of the report's unit only."""
    q = select(User).where(col(User.role).in_(assignments.ASSIGNABLE_ROLES), col(User.disabled).is_(False))
    if str(user.role) != Role.ADMIN:
        q = q.where(col(User.unit) == report.unit)
    rows = session.exec(q.order_by(col(User.email)).limit(CANDIDATE_LIMIT)).all()
    return [(u.email, f"{u.display_name or u.email} ({u.email}, {u.role}{', ' + u.unit if u.unit else ''})")
            for u in rows]


def load_panel(session: Session, user: User, report: Report) -> Panel | None:
    """The panel for the report page; None for a partner (who sees nothing of who works
    a report: AC-04)."""
    if str(user.role) == Role.PARTNER:
        return None
    owner = session.get(User, report.owner_id) if report.owner_id else None
    can = permissions.can_assign(session, user, report)
    return Panel(unit=report.unit, owner=owner.email if owner else None,
                 assignees=assignments.assignees(session, report.id), can_assign=can,
                 candidates=candidates(session, user, report) if can else [])


def _require_assignable(request: Request, session: Session, report_id: str) -> Report:
    """The report if the signed-in user may assign it, else ``Denied`` (uniform 404)."""
    report = permissions.require_report(request, session, report_id, "report.assign")
    if not permissions.can_assign(session, permissions.current_user(request), report):
        raise permissions.Denied(f"report:{report_id[:64]}", report_id=report.id, reason="report.assign")
    return report


async def assign(request: Request) -> Response:
    ctx = context.get(request)
    await ctx.check_session()
    report_id = request.path_params["report_id"]
    form = await request.form()
    email = str(form.get("email") or "").strip()
    as_owner = form.get("as_owner") == "1"
    user = permissions.current_user(request)

    def apply() -> str | None:
        with ctx.db.write() as session:
            report = _require_assignable(request, session, report_id)
            if not email:
                return "Choose who to assign."
            # A supervisor hands out their unit's reports to their unit only.
            unit = None if str(user.role) == Role.ADMIN else report.unit
            try:
                target = assignments.assignable_user(session, email, unit=unit)
                assignments.assign(ctx.db, session, report, target, as_owner=as_owner, actor=user.email,
                                   request_id=audit.request_id_of(request))
            except DomainError:
                return "Choose an enabled officer or supervisor" + (" of this report's unit." if unit else ".")
        return None

    error = await ctx.run_sync(apply)
    if error:
        from reviewer_ui.reports import report_page

        return await report_page(request, form_error=error, status_code=400)
    return RedirectResponse(f"/reports/{report_id}#assignment", status_code=303)


async def unassign(request: Request) -> Response:
    ctx = context.get(request)
    await ctx.check_session()
    report_id = request.path_params["report_id"]
    form = await request.form()
    user_id = str(form.get("user_id") or "")[:32]
    user = permissions.current_user(request)

    def apply() -> None:
        with ctx.db.write() as session:
            report = _require_assignable(request, session, report_id)
            assignments.unassign(ctx.db, session, report, user_id, actor=user.email,
                                 request_id=audit.request_id_of(request))

    await ctx.run_sync(apply)
    return RedirectResponse(f"/reports/{report_id}#assignment", status_code=303)


async def my_reports(request: Request) -> Response:
    from reviewer_ui.reports import decode_cursor, encode_cursor

    ctx = context.get(request)
    after = decode_cursor(request.query_params.get("after"))

    def load() -> tuple[list[assignments.QueueRow], bool]:
        user = permissions.current_user(request)
        # A queue is casework: partners and auditors have none (the same 404 as any
        # page that is not theirs).
        if str(user.role) not in permissions.CASEWORKER_ROLES and str(user.role) != Role.ADMIN:
            raise permissions.Denied("my-reports", reason="report.queue")
        with ctx.db.read() as session:
            return assignments.queue(session, user, after=after)

    rows, more = await ctx.run_sync(load)
    next_cursor = encode_cursor(rows[-1].report.created_at, rows[-1].report.id) if more and rows else None
    return ctx.render(request, "my_reports.html", rows=rows, next_cursor=next_cursor, after=after)


def mark_seen(request: Request, report: Report) -> None:
    """Called by the report page (in its worker thread) once it is shown: "new" in My
    reports counts from now."""
    ctx = context.get(request)
    user = permissions.current_user(request)
    if str(user.role) == Role.PARTNER:
        return
    try:
        with ctx.db.write() as session:
            assignments.mark_seen(session, user.id, report.id, ctx.clock())
    except IntegrityError:
        pass  # the same user's other tab recorded its look at the same moment: it stands


def routes() -> list[Route]:
    return [
        Route("/my-reports", my_reports, methods=["GET"], name="my_reports"),
        Route("/reports/{report_id}/assign", assign, methods=["POST"], name="report_assign"),
        Route("/reports/{report_id}/unassign", unassign, methods=["POST"], name="report_unassign"),
    ]
