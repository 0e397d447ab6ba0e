"""Admin pages: users (add, disable, enable, sign out everywhere, reset two-step sign-in,
issue a new password) and every live upload
link with a one-click revoke. Admins only (``admin.users`` / ``admin.links`` in the
permission matrix); anyone else gets the uniform 404 and an ``access.denied`` event.

A new account gets a random password shown once on the page that created it (never
stored in clear, never logged); its owner enrols TOTP at first sign-in. Disabling an
account, and "sign out everywhere", revoke its sessions in the same transaction, so its
next request is anonymous (SECURITY_CHECKLIST AC-10).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from reviewer_ui import accounts, audit, confirm, form_errors, permissions, stepup, throttle
from reviewer_ui.context import ReviewContext
from reviewer_ui.context import get as get_ctx
from storage import fixity, users
from storage import links as storage_links
from storage.errors import DomainError
from storage.models import Report, Role, UploadLink, User
from storage.users import add_user

MAX_FIELD = 320
# Least privilege first: the form's default is an officer, never an admin.
ROLE_CHOICES = [Role.OFFICER.value, Role.SUPERVISOR.value, Role.PARTNER.value, Role.AUDITOR.value, Role.ADMIN.value]


def _require(request: Request, action: str) -> User:
    user = permissions.current_user(request)
    if not permissions.can_act(user, action):
        raise permissions.Denied(f"admin:{request.url.path[:80]}", reason=action)
    return user


async def _form(request: Request) -> dict[str, str]:
    form = await request.form(max_files=0, max_fields=20, max_part_size=16 * 1024)
    return {k: v.strip()[:MAX_FIELD] for k, v in form.items() if isinstance(v, str)}


@dataclass(frozen=True)
class UserRow:
    user: User
    org: str
    live_sessions: int


def _users(ctx: ReviewContext) -> list[UserRow]:
    now = ctx.clock()
    with ctx.db.read() as s:
        rows = users.accounts_with_sessions(s, now)
    return [UserRow(user=u, org=org or "", live_sessions=live) for u, org, live in rows]


def _render_users(ctx: ReviewContext, request: Request, *, status_code: int = 200, **values: Any) -> Response:
    values.setdefault("errors", [])
    values.setdefault("created", None)
    values.setdefault("notice", None)
    values.setdefault("form", {})
    values.setdefault("reset", False)
    with ctx.db.read() as s:
        # Accounts whose TOTP codes are paused after too many wrong ones: an alert (AC-07).
        codes_locked = [u for u, _g in throttle.totp_locked_accounts(s, ctx.clock())]
        # Originals whose re-hash at rest failed (storage.fixity): an alarm every admin
        # sees until it is investigated (issue 14 item 4).
        integrity_alarms = fixity.alarms(s, limit=50)
    return ctx.render(request, "admin_users.html", status_code=status_code, users=_users(ctx),
                      roles=ROLE_CHOICES, codes_locked=codes_locked,
                      integrity_alarms=integrity_alarms,
                      ledger_alarms=_ledger_alarms(ctx), **values)


def _ledger_alarms(ctx: ReviewContext) -> list[Any]:
    """Failed rounds of the periodic ledger verifier (``storage.ledger_watch``): the
    admin page is where a broken custody chain must not go unseen (AU-05, AU-10)."""
    from storage.ledger_watch import failing

    with ctx.db.read() as s:
        return failing(s)


async def users_page(request: Request) -> Response:
    ctx = get_ctx(request)
    notices = {"disabled": "The account is disabled and signed out everywhere.",
               "enabled": "The account is enabled.",
               "signedout": "The account is signed out everywhere.",
               "mfareset": "Two-step sign-in is reset: the account sets up a new authenticator at its next sign-in.",
               "role": "The role is changed; the account's sessions have ended.",
               "codesallowed": "The account may use its authenticator codes again."}
    notice = notices.get(request.query_params.get("done", ""))

    def page() -> Response:  # one thread hop: the session check, the role check, the list
        _require(request, "admin.users")
        return _render_users(ctx, request, notice=notice)

    return await ctx.run_sync(page)


async def users_add(request: Request) -> Response:
    ctx = get_ctx(request)
    await ctx.check_session()
    admin = _require(request, "admin.users")
    form = await _form(request)
    # A fresh code before an account is made (AC-13): a hijacked admin session must not
    # mint itself a second admin. Without one, the form is held, not lost.
    gate = await stepup.gate(request, form, what=f"add the account {form.get('email', '')} "
                                                 f"with the role {form.get('role', '')}")
    if isinstance(gate, Response):
        return gate
    password = secrets.token_urlsafe(15)  # 120 bits, shown once

    def create() -> tuple[User | None, list[form_errors.FieldError]]:
        try:
            with ctx.db.write() as s:
                user = add_user(
                    ctx.db, s, form.get("email", ""), form.get("role", ""),
                    org_name=form.get("org") or None, display_name=form.get("display_name", ""),
                    password=password, unit=form.get("unit") or None, must_change_password=True,
                    actor=admin.email,
                )
                return user, []
        except DomainError as exc:
            return None, form_errors.for_code(exc.message, exc.code, form_errors.USER_FIELDS)

    user, errors = await ctx.run_sync(create)
    if user is None:
        page = await ctx.run_sync(lambda: _render_users(ctx, request, status_code=400, errors=errors, form=form))
        return stepup.finish(page, request, gate)
    page = await ctx.run_sync(lambda: _render_users(ctx, request, created={"email": user.email, "password": password}))
    return stepup.finish(page, request, gate)


# Actions an admin may not take on their own account: another admin must (no one locks
# themselves out, or resets their own factors from a hijacked session).
NOT_ON_SELF = frozenset({"disable", "reset-mfa", "reset-password"})
# Destructive ones ask first, with a page that works without JavaScript (reviewer_ui.confirm):
# the question, what follows from it, the button's words.
CONFIRM_WORDS = {
    "disable": ("Disable the account {email}?", "Its owner is signed out everywhere at once and cannot sign in "
                "until an admin enables the account again.", "Yes, disable the account"),
    "reset-mfa": ("Reset two-step sign-in for {email}?", "The authenticator app its owner uses stops working for "
                  "Exhibit and every session of the account ends; at the next sign-in they set up a new one.",
                  "Yes, reset two-step sign-in"),
    "reset-password": ("Issue a new password for {email}?", "The current password stops working and every session "
                       "of the account ends. You will see a one-time password to give its owner, who must then "
                       "choose their own.", "Yes, issue a new password"),
}
ACTION_WORDS = {"disable": "disable the account", "enable": "enable the account",
                "signout": "sign out everywhere", "reset-mfa": "reset two-step sign-in",
                "reset-password": "issue a new password"}


async def _target_email(ctx: ReviewContext, user_id: str, *, reason: str) -> str:
    """The e-mail of the account an admin action is about (named on the step-up page), or
    the same 404 as any unknown account."""

    def load() -> str | None:
        with ctx.db.read() as s:
            found = s.get(User, user_id)
            return found.email if found is not None else None

    email = await ctx.run_sync(load)
    if email is None:
        raise permissions.Denied(f"user:{user_id}", reason=reason)
    return email


def _user_action(action: str) -> Any:
    async def handler(request: Request) -> Response:
        ctx = get_ctx(request)
        await ctx.check_session()
        admin = _require(request, "admin.users")
        user_id = str(request.path_params["user_id"])[:64]
        form = await _form(request)

        email = await _target_email(ctx, user_id, reason=f"admin.users.{action}")
        if action in CONFIRM_WORDS and not confirm.given(form):
            question, consequence, button = CONFIRM_WORDS[action]
            return confirm.page(request, form, question=question.format(email=email), consequence=consequence,
                                button=button, back="/admin/users")
        # Every account change needs a fresh code (AC-13), like an original download; the
        # held form is carried out once the code passes (reviewer_ui.stepup).
        gate = await stepup.gate(request, form, what=f"{ACTION_WORDS[action]} for {email}")
        if isinstance(gate, Response):
            return gate
        rid = audit.request_id_of(request)
        now = ctx.clock()

        def act() -> tuple[bool, dict[str, str] | None]:
            with ctx.db.write() as s:
                target = s.get(User, user_id)
                if target is None:
                    return False, None
                if action in NOT_ON_SELF and target.id == admin.id:
                    return True, None
                if action == "disable":
                    accounts.disable(ctx.db, s, target, actor=admin.email, now=now, request_id=rid)
                elif action == "enable":
                    accounts.enable(ctx.db, s, target, actor=admin.email, request_id=rid)
                elif action == "signout":
                    accounts.sign_out_everywhere(ctx.db, s, target, actor=admin.email, now=now, request_id=rid)
                elif action == "reset-mfa":
                    accounts.reset_mfa(ctx.db, s, target, actor=admin.email, now=now, request_id=rid)
                elif action == "reset-password":
                    password = accounts.new_password(ctx.db, s, target, actor=admin.email, now=now, request_id=rid)
                    return True, {"email": target.email, "password": password}
                return True, None

        found, reset = await ctx.run_sync(act)
        if not found:
            raise permissions.Denied(f"user:{user_id}", reason=f"admin.users.{action}")
        if reset is not None:
            # Shown once, in this response only (no redirect: it must not sit in a URL).
            page = await ctx.run_sync(lambda: _render_users(ctx, request, created=reset, reset=True))
            return stepup.finish(page, request, gate)
        done = {"disable": "disabled", "enable": "enabled", "signout": "signedout",
                "reset-mfa": "mfareset", "reset-password": "signedout"}[action]
        return stepup.finish(RedirectResponse(f"/admin/users?done={done}", status_code=303), request, gate)

    return handler


async def users_role(request: Request) -> Response:
    """Change an account's role (never one's own: another admin must). Needs a fresh code
    like every account change (AC-13); the account's sessions end, so the new role starts
    with a new sign-in."""
    ctx = get_ctx(request)
    await ctx.check_session()
    admin = _require(request, "admin.users")
    user_id = str(request.path_params["user_id"])[:64]
    form = await _form(request)
    new_role = form.get("role", "")

    email = await _target_email(ctx, user_id, reason="admin.users.role")
    gate = await stepup.gate(request, form, what=f"change the role of {email} to {new_role}")
    if isinstance(gate, Response):
        return gate
    now = ctx.clock()
    rid = audit.request_id_of(request)

    def change() -> str | None:
        with ctx.db.write() as s:
            target = s.get(User, user_id)
            if target is None:
                return "The account no longer exists."
            if target.id == admin.id:
                return "Another admin must change your own role."
            if new_role not in ROLE_CHOICES:
                return "Choose one of the roles listed."
            if new_role == Role.PARTNER and not target.org_id:
                return "A partner needs an organisation: add the account again with one."
            # The one role change the CLI uses too (i15): it also refuses a staff role in a
            # partner organisation and a partner role outside one (ERR_ORG_KIND_MISMATCH),
            # since a share to a partner organisation reaches every member of it (AC-04).
            try:
                accounts.set_role(ctx.db, s, target, new_role, actor=admin.email, now=now, request_id=rid)
            except DomainError as exc:
                return exc.message[:1].upper() + exc.message[1:] + "."
            return None

    error = await ctx.run_sync(change)
    if error is not None:
        page = await ctx.run_sync(lambda: _render_users(ctx, request, status_code=400, errors=[error]))
        return stepup.finish(page, request, gate)
    return stepup.finish(RedirectResponse("/admin/users?done=role", status_code=303), request, gate)


async def allow_codes(request: Request) -> Response:
    """Lift the per-account TOTP pause (``reviewer_ui.throttle``): a custody event names
    the admin, so letting guessing resume is never silent."""
    ctx = get_ctx(request)
    await ctx.check_session()
    admin = _require(request, "admin.users")
    user_id = str(request.path_params["user_id"])[:64]
    form = await _form(request)
    # Letting code guessing resume on an account is an account change: a fresh code
    # first, like every other one on /admin (AC-13).
    gate = await stepup.gate(request, form, what="allow authenticator codes again for an account")
    if isinstance(gate, Response):
        return gate

    def act() -> bool:
        with ctx.db.write() as s:
            if not throttle.allow_codes(s, user_id):
                return False
            audit.record_in(ctx, s, request, "auth.totp_unlocked", subject=f"user:{user_id}", actor=admin.email,
                            detail={"user_id": user_id})
            return True

    if not await ctx.run_sync(act):
        raise permissions.Denied(f"user:{user_id}", reason="admin.users.allow-codes")
    return stepup.finish(RedirectResponse("/admin/users?done=codesallowed", status_code=303), request, gate)


@dataclass(frozen=True)
class LinkRow:
    link: UploadLink
    reference: str
    report_id: str


async def links_page(request: Request) -> Response:
    ctx = get_ctx(request)
    now = ctx.clock()

    def load() -> list[LinkRow]:
        _require(request, "admin.links")  # in the page's one thread hop, after the session check
        with ctx.db.read() as s:
            rows = s.exec(
                select(UploadLink, Report.reference, Report.id)
                .join(Report, col(Report.id) == col(UploadLink.report_id))
                .where(col(UploadLink.revoked_at).is_(None), col(UploadLink.expires_at) > now)
                .order_by(col(UploadLink.expires_at))
            ).all()
        return [LinkRow(link=link, reference=ref, report_id=rid) for link, ref, rid in rows]

    rows = await ctx.run_sync(load)
    notice = "The link is revoked: it no longer accepts uploads." if request.query_params.get("done") else None
    return ctx.render(request, "admin_links.html", links=rows, notice=notice)


async def link_revoke(request: Request) -> Response:
    ctx = get_ctx(request)
    await ctx.check_session()
    admin = _require(request, "admin.links")
    link_id = str(request.path_params["link_id"])[:64]
    form = await _form(request)
    if not confirm.given(form):
        def reference() -> str | None:
            with ctx.db.read() as s:
                found = s.exec(select(Report.reference).join(UploadLink, col(UploadLink.report_id) == col(Report.id))
                               .where(col(UploadLink.id) == link_id, col(UploadLink.revoked_at).is_(None))).first()
                return str(found) if found is not None else None

        ref = await ctx.run_sync(reference)
        if ref is None:
            raise permissions.Denied(f"link:{link_id}", reason="admin.links.revoke")
        return confirm.page(request, form, question=f"Revoke the upload link for {ref}?",
                            consequence="The link stops accepting uploads at once; files already received are kept. "
                            "A citizen who still has evidence to send will need a new link.",
                            button="Yes, revoke the link", back="/admin/links")

    def revoke() -> bool:
        try:
            with ctx.db.write() as s:
                storage_links.revoke_link(ctx.db, s, link_id, actor=admin.email,
                                          request_id=audit.request_id_of(request))
            return True
        except DomainError:
            return False

    if not await ctx.run_sync(revoke):
        raise permissions.Denied(f"link:{link_id}", reason="admin.links.revoke")
    return RedirectResponse("/admin/links?done=revoked", status_code=303)


async def admin_home(request: Request) -> Response:
    await get_ctx(request).check_session()
    _require(request, "admin.users")
    return RedirectResponse("/admin/users", status_code=303)


def routes(ctx: ReviewContext) -> list[BaseRoute]:
    return [
        Route("/admin", admin_home, methods=["GET"]),
        Route("/admin/users", users_page, methods=["GET"]),
        Route("/admin/users", users_add, methods=["POST"]),
        Route("/admin/users/{user_id}/disable", _user_action("disable"), methods=["POST"]),
        Route("/admin/users/{user_id}/enable", _user_action("enable"), methods=["POST"]),
        Route("/admin/users/{user_id}/signout", _user_action("signout"), methods=["POST"]),
        Route("/admin/users/{user_id}/reset-mfa", _user_action("reset-mfa"), methods=["POST"]),
        Route("/admin/users/{user_id}/reset-password", _user_action("reset-password"), methods=["POST"]),
        Route("/admin/users/{user_id}/role", users_role, methods=["POST"]),
        Route("/admin/users/{user_id}/allow-codes", allow_codes, methods=["POST"]),
        Route("/admin/links", links_page, methods=["GET"]),
        Route("/admin/links/{link_id}/revoke", link_revoke, methods=["POST"]),
    ]
