"""How times and sizes read on staff pages (i15 item 5): one formatter each.

* Times in the force's zone (``EXHIBIT_TIME_ZONE``, default Europe/London, zoneinfo: BST
  and GMT as the date has them), each in a ``<time>`` element whose ``datetime`` and
  ``title`` (shown on hover) give the UTC instant the ledger keeps. The ledger, logs and
  exports stay UTC.
* Sizes in binary units (``1.5 MiB``) everywhere: ``context.format_bytes``.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup, escape


@cache
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def _aware(value: dt.datetime) -> dt.datetime:
    # The database hands back naive UTC on SQLite.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def local_text(value: dt.datetime, zone_name: str, *, seconds: bool = False) -> str:
    """``3 Dec 2026 10:04 GMT``, built from the fields rather than with ``strftime``
    (a report list prints fifty of these; see ``time_html``)."""
    local = _aware(value).astimezone(zone(zone_name))
    sec = f":{local.second:02d}" if seconds else ""
    return f"{local.day} {_MONTHS[local.month - 1]} {local.year} {local.hour:02d}:{local.minute:02d}{sec} {local.tzname()}"


def clock(seconds: float) -> str:
    """A moment of a video, as its player shows it: ``75.4`` -> ``1:15.400``."""
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:06.3f}"


def time_html(value: dt.datetime | None, zone_name: str, *, seconds: bool = False) -> Markup:
    """``<time datetime="...Z" title="... UTC">3 Dec 2026 10:04 GMT</time>``."""
    if value is None:
        return Markup("-")
    utc = _aware(value).astimezone(dt.UTC)
    day = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
    hms = f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    # XSS: every part is digits from the datetime, and the local text (its zone's
    # abbreviation comes from tzdata) is escaped. Not Markup.format or %, which escape
    # each part in Python: with strftime they made a time cost about 60 us, and the
    # report list (fifty rows) 10-25% slower in benchmarks/review.py; now about 15 us.
    local = escape(local_text(utc, zone_name, seconds=seconds))
    return Markup(f'<time datetime="{day}T{hms}Z" title="{day} {hms} UTC">{local}</time>')  # noqa: S704


def _zone_of(context: jinja2.runtime.Context) -> str:
    settings: Any = context.get("settings")
    return str(getattr(settings, "time_zone", "") or "Europe/London")


def _instant(value: dt.datetime | str | None) -> dt.datetime | None:
    # Some views hand over the ledger's ISO text (a custody event's detail) rather than a
    # datetime: the same instant, read back.
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    return value


@jinja2.pass_context
def local_time(context: jinja2.runtime.Context, value: dt.datetime | str | None, seconds: bool = False) -> Markup:
    """``{{ at|when }}`` (or ``{{ local_time(at) }}``) in a template: the one way a staff
    page prints a time (tests/reviewer_ui/test_times_everywhere.py scans for others)."""
    return time_html(_instant(value), _zone_of(context), seconds=seconds)


def install(env: jinja2.Environment) -> None:
    env.globals["local_time"] = local_time
    env.filters["when"] = local_time
