"""Domain errors with stable codes. Each app maps codes to HTTP statuses in its own
``errors.py``; the domain never speaks HTTP."""

from __future__ import annotations


class DomainError(Exception):
    code = "ERR_DOMAIN"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message


class NotFound(DomainError):
    code = "ERR_NOT_FOUND"


class Conflict(DomainError):
    code = "ERR_CONFLICT"


class Invalid(DomainError):
    code = "ERR_INVALID"


class LinkProblem(DomainError):
    """An upload link that cannot be used. ``code`` says why: ERR_LINK_UNKNOWN,
    ERR_LINK_EXPIRED, ERR_LINK_REVOKED, ERR_LINK_EXHAUSTED."""

    code = "ERR_LINK_UNKNOWN"

    def __init__(self, message: str, *, code: str, report_reference: str | None = None) -> None:
        super().__init__(message, code=code)
        # Only set when the link was real: the citizen may quote it to the officer.
        self.report_reference = report_reference
