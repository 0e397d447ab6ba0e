"""A person's own account: change your password (issue 15 item 2).

    GET  /account/password   the form: current password, new password, and a TOTP code
                             unless this session passed one in the last few minutes
    POST /account/password   checked -> ``accounts.change_own_password`` -> 303 back with a notice

Who may use it: any signed-in account, and an account whose password is a one-time one
(``User.must_change_password``: made by ``exhibit users add``/``passwd`` or an admin's "new
password"). Such an account, once past password and TOTP, is NOT signed in
(``reviewer_ui.middleware`` puts it in ``password_change_user``, never ``user``): every
other page sends it here, so a one-time password that leaked on its way to its owner opens
nothing but this form, and the owner's own password replaces it first.

Threats answered:

* a hijacked or unattended session changing the password to lock its owner out: the
  current password AND a fresh second factor are asked (AC-13). The factor is the TOTP of
  the sign-in when that was under ``permissions.STEP_UP_SECONDS`` ago (the first-sign-in
  change comes straight after it), else a new code, spent once like every code (AC-08);
* guessing the current password through this form: each try counts in the sign-in
  throttle for the account and the client (AC-07), and a wrong one is an ``auth.failed``
  custody event;
* whoever knew the old password and is signed in elsewhere: every other session of the
  account ends (AC-10);
* weak choices: ``storage.password_policy`` (length and a deny-list, NCSC).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from reviewer_ui import accounts, audit, auth, permissions
from reviewer_ui.context import ReviewContext
from reviewer_ui.context import get as get_ctx
from reviewer_ui.form_errors import FieldError
from reviewer_ui.middleware import client_ip
from storage import password_policy
from storage.errors import DomainError
from storage.models import User
from storage.passwords import verify_password

PATH = "/account/password"
CURRENT_WRONG = FieldError("Your current password is not right.", "current-password")


def _who(request: Request) -> tuple[User, bool]:
    """The account asking and whether it is here because its password is a one-time one;
    or ``LoginRequired``."""
    state = request.scope.get("state", {})
    forced = state.get("password_change_user")
    if isinstance(forced, User):
        return forced, True
    return permissions.current_user(request), False


def _page(ctx: ReviewContext, request: Request, user: User, forced: bool, *, status_code: int = 200,
          errors: list[str | FieldError] | None = None, notice: str | None = None) -> Response:
    return ctx.render(request, "account_password.html", status_code=status_code, errors=errors or [],
                      forced=forced, account=user, notice=notice,
                      need_code=not permissions.recently_verified(request),
                      min_length=password_policy.MIN_LENGTH)


async def password_page(request: Request) -> Response:
    ctx = get_ctx(request)
    await ctx.check_session()
    user, forced = _who(request)
    notice = "Your password is changed. Your other sessions have ended." if request.query_params.get("done") else None
    return _page(ctx, request, user, forced, notice=None if forced else notice)


async def password_submit(request: Request) -> Response:
    ctx = get_ctx(request)
    await ctx.check_session()
    user, forced = _who(request)
    form = await request.form(max_files=0, max_fields=10, max_part_size=8 * 1024)
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    current = fields.get("current_password", "")[:auth.MAX_PASSWORD]
    new = fields.get("new_password", "")[:password_policy.MAX_LENGTH + 1]
    code = fields.get("code", "")[:20]
    need_code = not permissions.recently_verified(request)

    def again(status: int, errors: list[str | FieldError]) -> Response:
        return _page(ctx, request, user, forced, status_code=status, errors=errors)

    # Each empty field answered on its own (WCAG 3.3.1); nothing is tried, nothing counted.
    missing: list[str | FieldError] = [
        FieldError(m, f) for f, m, v, asked in (
            ("current-password", "Enter your current password", current, True),
            ("new-password", "Enter a new password", new, True),
            ("code", "Enter the 6-digit code from your authenticator app", code, need_code)) if asked and not v]
    # The policy is checked before anything is spent (a code is single use).
    weak = password_policy.problem(new, email=user.email) if new else None
    if weak is not None:
        missing.append(FieldError(weak.message + ".", "new-password"))
    if missing:
        return again(400, missing)

    client = client_ip(request.scope)
    throttle = auth.throttle_of(ctx)
    attempt = auth._attempt(ctx, request, user.email, client)
    wait = await ctx.run_sync(throttle.begin, attempt)
    if wait > 0:
        return again(429, [auth.wait_message(wait)])
    row = request.scope["state"]["staff_session"]
    now = ctx.clock()
    outcome: dict[str, Any] = {}

    def change() -> list[str | FieldError]:
        with ctx.db.read() as s:
            stored = s.get(User, user.id)
        if stored is None or not verify_password(stored.password_hash, current):
            outcome["failed"] = "password"
            return [CURRENT_WRONG]
        with ctx.db.write() as s:
            if need_code:
                fresh = auth._check_totp(ctx, s, request, user.id, code, now)
                if not isinstance(fresh, User):
                    outcome["failed"] = "totp"
                    return [auth.CODES_LOCKED if fresh == auth.LOCKED else FieldError(auth.CODE_FAILURE, "code")]
            target = s.get(User, user.id)
            assert target is not None
            try:
                accounts.change_own_password(ctx.db, s, target, new, keep_session=row.id, now=now,
                                             request_id=audit.request_id_of(request))
            except DomainError as exc:
                return [FieldError(exc.message + ".", "new-password")]
        return []

    errors: list[str | FieldError] = []
    try:
        errors = await ctx.run_sync(change)
    finally:
        await ctx.run_sync(lambda: throttle.end(attempt, failed="failed" in outcome))
    if "failed" in outcome:
        await audit.record(ctx, request, "auth.failed", subject=f"user:{user.id}", actor=user.email,
                           detail={"email": user.email, "step": f"password-change:{outcome['failed']}",
                                   "client": client})
    if errors:
        return again(400, errors)
    await ctx.run_sync(throttle.succeeded, attempt)
    # A one-time password replaced: the account is signed in from the next request on.
    return RedirectResponse("/" if forced else f"{PATH}?done=1", status_code=303)


def routes(ctx: ReviewContext) -> list[BaseRoute]:
    return [
        Route(PATH, password_page, methods=["GET"]),
        Route(PATH, password_submit, methods=["POST"]),
    ]
