"""Fresh step-up for account changes on /admin, an original's download and a share, with
the form held, not lost (AC-13; i11 item 5: "admin actions need the same fresh step-up
as a download"; i15 item 5: after re-authentication the download or share completes,
with the reason the officer typed).

A stolen or unattended admin session must not be enough to create an admin, reset
another account's two-step sign-in, change a role or disable an account: each needs a
TOTP code from the last ``permissions.STEP_UP_SECONDS``, like an original download.

When the session's last code is older, the action is not carried out; the answer is a
page that holds the admin's form (its fields as hidden inputs, in their own browser, so
nothing is stored server-side and any process can finish it) and asks for a code. That
page posts back to the same action; a passing code re-issues the session
(``auth.step_up``) and the held action is carried out in that same request, with the new
cookie on its response.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from reviewer_ui import auth, permissions, sessions
from reviewer_ui.context import get as get_ctx
from reviewer_ui.form_errors import FieldError

CODE_FIELD = "step_up_code"
NOT_HELD = frozenset({CODE_FIELD, "csrf_token"})  # the CSRF token is re-rendered for the new page


async def gate(request: Request, form: dict[str, str], *, what: str, cancel: str = "/admin/users",
               why: str = "Changing accounts") -> Response | str | None:
    """``None``: the session is fresh, go ahead. A ``str``: the form carried a code that
    passed; go ahead and ``finish(response, cookie)``. A ``Response``: answer with it (the
    held form asking for a code, or the same page again after a wrong or throttled code);
    nothing was done. ``why`` starts the page's sentence ("... needs a fresh code"),
    ``cancel`` is where its Cancel link goes (a local path)."""
    if permissions.recently_verified(request):
        return None
    ctx = get_ctx(request)
    code = form.get(CODE_FIELD, "")
    errors: list[str | FieldError] = []
    status = 403
    if code:
        result = await auth.step_up(request, code)
        if result.cookie is not None:
            return result.cookie
        if result.locked:
            status, errors = 429, [FieldError(auth.CODES_LOCKED, "step-up-code")]
        elif result.wait:
            status, errors = 429, [FieldError(auth.wait_message(result.wait), "step-up-code")]
        else:
            status, errors = 400, [FieldError(auth.CODE_FAILURE, "step-up-code")]
    held = {k: v for k, v in form.items() if k not in NOT_HELD}
    return ctx.render(request, "step_up_held.html", status_code=status, action=request.url.path, held=held,
                      what=what, errors=errors, code_field=CODE_FIELD, cancel=cancel, why=why)


def finish(response: Response, request: Request, cookie: str | None) -> Response:
    """Set the re-issued session cookie (when the gate issued one) on the action's answer."""
    if cookie is not None:
        settings = get_ctx(request).settings
        sessions.set_cookie(response, settings, sessions.cookie_name(settings), cookie)
    return response
