"""Form errors on staff pages, identified the way the citizen pages identify them (WCAG
3.3.1 error identification, 3.3.3 error suggestion, 4.1.2 name, role, value):

- an error summary at the top of the page (``_errors.html``) that takes focus when the page
  loads (``autofocus``, and ``/static/errors.js``) and links to each field in error;
- next to each field its own message (``id="<field>-error"``, "Error:" for screen readers),
  the field ``aria-invalid="true"`` and ``aria-describedby`` that message (``_field.html``);
- a ``<title>`` that starts with "Error: " (``base.html``).

A view passes ``errors=[...]`` to ``ctx.render``: each a ``FieldError`` (a message and the
id of the control it is about) or a plain string (a message about no one field, e.g. "too
many attempts"). ``ctx.render`` normalises the list. The casework forms on the item and
report pages answer with one refusal string from code others own (items.py, sharing.py,
reports.py, media.py); ``casework`` works out which field that refusal is about from the
form that was posted, so those modules keep returning plain strings.

Messages are the server's own (the forms are ``novalidate``): the browser's "required"
bubbles are not announced reliably, vanish on their own and cannot be styled or linked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from markupsafe import Markup
from starlette.requests import Request


@dataclass(frozen=True)
class FieldError:
    message: str
    field: str | None = None  # the id of the control the message is about; None: the whole form
    # Other controls the same message is about (marked invalid and described by it), e.g.
    # the password as well as the email: sign-in never says which one was wrong (AC-05).
    also: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.message


def normalise(errors: Iterable[str | FieldError | None] | None) -> list[FieldError]:
    return [e if isinstance(e, FieldError) else FieldError(str(e)) for e in errors or () if e]


async def casework(request: Request, form_error: str | None, download_error: str | None = None) -> list[FieldError]:
    """The item or report page's errors, each tied to the control of the form that was
    posted (the request is the POST that was refused; its form is already parsed)."""
    errors: list[FieldError] = []
    if download_error:
        errors.append(FieldError(download_error, "download-reason"))
    if request.method != "POST" or not (form_error or download_error):
        return [*errors, *normalise([form_error])]
    path = request.url.path
    form = await request.form()
    # What was typed goes back into the form (autoescaped), so a refusal costs no retyping.
    request.scope.setdefault("state", {})[POSTED] = {
        k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    if not form_error:
        return errors
    field: str | None = None
    if path.startswith("/reports/") and path.endswith("/triage"):
        # The report page's bulk triage (reviewer_ui/item_filters.py).
        if not form.getlist("item") or "Select" in form_error:
            field = "bulk-items"
        elif form.get("decision") not in ("accepted", "declined"):
            field = "bulk-decision-accepted"
        else:
            field = "bulk-reason"
    elif path.endswith("/triage"):
        if form.get("decision") not in ("accepted", "declined"):
            # items.triage stops at the first problem; the summary lists every one (as the
            # citizen form does), so a missing reason is named alongside the decision.
            from reviewer_ui.items import TRIAGE_REASON_MAX

            errors.append(FieldError(form_error, "decision-accept"))
            if not str(form.get("reason") or "").strip():
                errors.append(FieldError(f"Give a reason (up to {TRIAGE_REASON_MAX} characters).", "triage-reason"))
            return errors
        field = "triage-reason"
    elif path.endswith("/tags"):
        field = "tag-new"
    elif path.endswith("/stills"):
        field = "still-at"
    elif path.endswith("/notes"):
        supersedes = str(form.get("supersedes") or "")
        body = str(form.get("body") or "").strip()
        # "That note is not on this item" is about no field a user can change.
        if not body or len(body) > 10_000 or not supersedes:
            field = f"edit-{supersedes}" if supersedes else "note-body"
    elif path.endswith("/shares"):
        scope = "item" if path.startswith("/items/") else "report"
        if "partner" in form_error:
            field = f"partner-{scope}"
        elif "days" in form_error.lower() or "expir" in form_error.lower():
            field = f"days-{scope}"
    elif path.endswith("/links"):
        field = _link_field(form.get("expires"), form.get("max_files"))
    elif path.endswith("/assign"):
        field = "assign-email"
    return [*errors, FieldError(form_error, field)]


def _link_field(expires: object, max_files: object) -> str:
    """The first of the link form's three limits that reports.link_issue refuses (when the
    expiry and the file count pass, it is the byte quota)."""
    from storage.settings import parse_duration

    try:
        if not 0 < parse_duration(str(expires or "7d")) <= 90 * 86400:
            return "expires"
    except ValueError:
        return "expires"
    try:
        if not 0 < int(str(max_files or "1")) <= 10000:
            return "max_files"
    except ValueError:
        return "max_files"
    return "max_bytes"


# Which control each storage refusal code is about, for the create-report and add-user forms.
REPORT_FIELDS = {"ERR_REFERENCE_INVALID": "reference", "ERR_REPORT_EXISTS": "reference", "ERR_KIND_INVALID": "kind"}
USER_FIELDS = {"ERR_EMAIL_INVALID": "new-email", "ERR_USER_EXISTS": "new-email", "ERR_ROLE_INVALID": "new-role",
               "ERR_ORG_REQUIRED": "new-org", "ERR_ORG_KIND_MISMATCH": "new-org"}


def for_code(message: str, code: str | None, fields: dict[str, str]) -> list[FieldError]:
    return [FieldError(message, fields.get(code or ""))]


POSTED = "form_errors.posted"


def posted(request: Request, name: str, default: str = "") -> str:
    """The value the refused form sent for ``name`` (or ``default`` on a fresh page)."""
    values = request.scope.get("state", {}).get(POSTED) or {}
    value = values.get(name, default)
    return value if isinstance(value, str) else default


# --- template helpers (globals of the Jinja environment, see context.make_templates) ------


def _mine(errors: list[FieldError], field: str) -> list[FieldError]:
    return [e for e in errors if e.field == field]


def _shared(errors: list[FieldError], field: str) -> list[FieldError]:
    return [e for e in errors if field in e.also and e.field]


def field_error(errors: list[FieldError], field: str) -> Markup:
    """The field's own message, placed after its label and hint, before the control."""
    mine = _mine(errors, field)
    if not mine:
        return Markup("")
    text = " ".join(e.message for e in mine)
    return Markup('<p class="error-message" id="{0}-error"><span class="visually-hidden">Error:</span> {1}</p>').format(
        field, text)


def field_attrs(errors: list[FieldError], field: str, hint: str = "") -> Markup:
    """` aria-invalid="true" aria-describedby="<hint> <field>-error"` as they apply."""
    mine, shared = _mine(errors, field), _shared(errors, field)
    described = [hint] if hint else []
    if mine:
        described.append(f"{field}-error")
    described += [f"{e.field}-error" for e in shared]
    out = Markup("")
    if mine or shared:
        out += Markup(' aria-invalid="true"')
    if described:
        out += Markup(' aria-describedby="{0}"').format(" ".join(described))
    return out


def group_class(errors: list[FieldError], field: str) -> str:
    return " form-group--error" if _mine(errors, field) or _shared(errors, field) else ""
