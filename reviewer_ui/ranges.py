"""HTTP Range (RFC 9110 §14) for media served through the app, with bounded work.

One range per response: a multi-range request (``bytes=0-0,1-1,...`` 10,000 times, the
CVE-2025-62727 shape) is answered with its *first* range only, found by one
``partition`` over a header whose length is capped, so the CPU a hostile header costs is
constant (SECURITY_CHECKLIST VL-08). Browsers seeking a video only ever ask for one.

``parse_range(header, size)`` returns:
- ``None``: no Range, another unit, or a header too long to be honest -> 200, whole body;
- ``Unsatisfiable``: malformed bytes range, or none of it inside the object -> 416 with
  ``Content-Range: bytes */size``;
- ``ByteRange(start, end)``: inclusive ``end`` as in Content-Range -> 206.
"""

from __future__ import annotations

from dataclasses import dataclass

# Longest Range header we read at all. A seek is ~30 characters; more than this is an
# attack or a bug, and is answered as if there were no Range.
MAX_RANGE_HEADER = 200
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


@dataclass(frozen=True)
class Unsatisfiable:
    def content_range(self, size: int) -> str:
        return f"bytes */{size}"


def _number(text: str) -> int | None:
    # int() alone would accept "+5", " 5", "5_0" and 4,000-digit numbers.
    if not text or len(text) > 19 or not set(text) <= _DIGITS:
        return None
    return int(text)


def parse_range(header: str | None, size: int) -> ByteRange | Unsatisfiable | None:
    if header is None or len(header) > MAX_RANGE_HEADER:
        return None
    unit, eq, ranges = header.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return None  # a unit we do not know: ignore the header (RFC 9110 §14.2)
    first, _comma, _rest = ranges.partition(",")  # first range only; the rest is never parsed
    first = first.strip()
    start_text, dash, end_text = first.partition("-")
    if not dash:
        return Unsatisfiable()
    start_text, end_text = start_text.strip(), end_text.strip()
    if not start_text:  # suffix: the last N bytes
        suffix = _number(end_text)
        if suffix is None or suffix == 0 or size == 0:
            return Unsatisfiable()
        return ByteRange(max(0, size - suffix), size - 1)
    start = _number(start_text)
    if start is None:
        return Unsatisfiable()
    if end_text:
        end = _number(end_text)
        if end is None or end < start:
            return Unsatisfiable()
    else:
        end = size - 1
    if start >= size:
        return Unsatisfiable()
    return ByteRange(start, min(end, size - 1))
