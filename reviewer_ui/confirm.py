"""A confirmation step before a destructive action, that works without JavaScript
(issue 15 item 2: revoke a share, disable an account, reset a password or two-step
sign-in, revoke an upload link).

The action's own button posts its form as before; without ``confirmed=yes`` in it the
handler does nothing and answers with a page that names what is about to happen and holds
the form (its fields as hidden inputs, like ``reviewer_ui.stepup``: nothing is stored on the
server). Its "Yes, ..." button posts the same form back to the same URL with
``confirmed=yes`` and a fresh CSRF token of this session (the CSRF middleware checks it as
on every POST); "Cancel" is a plain link back. No script, no ``confirm()`` dialog: a
keyboard, a screen reader or a browser with JavaScript off gets the same step.

The threat is a slip, not an attacker: one misplaced click on a dense admin table must
not cut a partner off or lock a colleague out. Authorisation is checked BEFORE the page is
shown (an account that may not act gets the uniform 404, never a question), and the
step-up for account changes (AC-13) comes after it, holding ``confirmed=yes`` along.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from reviewer_ui.context import get as get_ctx

FIELD = "confirmed"
NOT_HELD = frozenset({FIELD, "csrf_token", "step_up_code"})


async def form_of(request: Request) -> dict[str, str]:
    """The posted form's text fields (the action forms are small)."""
    form = await request.form(max_files=0, max_fields=20, max_part_size=16 * 1024)
    return {k: v[:320] for k, v in form.items() if isinstance(v, str)}


def given(form: dict[str, str]) -> bool:
    return form.get(FIELD) == "yes"


def page(request: Request, form: dict[str, str], *, question: str, consequence: str, button: str,
         back: str) -> Response:
    """The confirmation page for this POST (nothing has been done)."""
    held = {k: v for k, v in form.items() if k not in NOT_HELD}
    return get_ctx(request).render(request, "confirm.html", action=request.url.path, held=held, question=question,
                                   consequence=consequence, button=button, back=back, field=FIELD)
