"""Numbers from staff forms, parsed strictly and refused by field name.

A form field is the attacker's (or a tired officer's) text: ``expires=infd`` or
``max_bytes=1e400G`` used to reach ``int(float(...))`` and end as a 500. Every staff form
that takes a number reads it through ``number_field``: the strict parsers of
``storage.settings`` (ASCII digits, one known unit, exact arithmetic), a range check, and
on any failure a ``FieldError`` that names the field, which the handler answers with a
400 and the page again (never a 500, never a half-made object).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from storage.settings import parse_bytes, parse_count, parse_duration

PARSERS: dict[str, Callable[[str], int]] = {"bytes": parse_bytes, "duration": parse_duration, "count": parse_count}
MAX_FIELD_CHARS = 40  # longer than any number a person types; more is refused unread


class FieldError(ValueError):
    """A form field that is not an acceptable number; ``str()`` names the field."""

    def __init__(self, field: str, label: str, rule: str) -> None:
        self.field = field
        super().__init__(f"{label} ({field}): {rule}")


def number_field(form: Any, field: str, *, label: str, kind: str, default: str, low: int, high: int,
                 rule: str) -> int:
    """The value of ``field`` (``default`` when absent or blank) parsed as ``kind`` and
    within ``low..high``, or a ``FieldError`` with ``rule`` (the human wording of the
    allowed range)."""
    raw = form.get(field)
    text = default if raw is None or str(raw).strip() == "" else str(raw)
    if len(text) > MAX_FIELD_CHARS:
        raise FieldError(field, label, rule)
    try:
        value = PARSERS[kind](text)
    except ValueError:
        raise FieldError(field, label, rule) from None
    if not low <= value <= high:
        raise FieldError(field, label, rule)
    return value
