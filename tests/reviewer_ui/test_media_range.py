"""HTTP Range on media served through the app (RFC 9110 §14; SECURITY_CHECKLIST VL-08)."""

from __future__ import annotations

from typing import Any

import pytest

from reviewer_ui.ranges import MAX_RANGE_HEADER, ByteRange, Unsatisfiable, parse_range
from tests.fixtures.casework import Casework, SignedIn

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=0-", ByteRange(0, 999)),
        ("bytes=500-", ByteRange(500, 999)),
        ("bytes=990-2000", ByteRange(990, 999)),
        ("bytes=-100", ByteRange(900, 999)),
        ("bytes=-5000", ByteRange(0, 999)),
        ("bytes = 10 - 20", ByteRange(10, 20)),
        ("BYTES=1-1", ByteRange(1, 1)),
        ("bytes=0-0,5-9", ByteRange(0, 0)),  # first range only
        ("items=0-5", None),  # unknown unit: ignored
        ("bytes=1000-", Unsatisfiable()),
        ("bytes=1000-1005", Unsatisfiable()),
        ("bytes=-0", Unsatisfiable()),
        ("bytes=20-10", Unsatisfiable()),
        ("bytes=abc", Unsatisfiable()),
        ("bytes=+5-10", Unsatisfiable()),
        ("bytes=5_0-60", Unsatisfiable()),
        ("bytes=-", Unsatisfiable()),
        ("bytes=" + "9" * 40 + "-", Unsatisfiable()),
    ],
)
def test_parse_range(header: str | None, expected: object) -> None:
    assert parse_range(header, SIZE) == expected


def test_empty_object_has_no_satisfiable_range() -> None:
    assert parse_range("bytes=0-", 0) == Unsatisfiable()
    assert parse_range("bytes=-1", 0) == Unsatisfiable()


def test_hostile_multi_range_header_costs_constant_work() -> None:
    hostile = "bytes=" + ",".join(f"{i}-{i}" for i in range(10_000))
    assert len(hostile) > MAX_RANGE_HEADER
    assert parse_range(hostile, SIZE) is None  # too long to be honest: whole body, no parsing
    # The work is bounded by the cap, on any machine: at most MAX_RANGE_HEADER characters
    # are looked at, and of those only the first range; what follows it is never parsed
    # (garbage there changes nothing). This was a wall-clock bound on 10,000 parses, which
    # a loaded machine could exceed without any change in the parser.
    short_many = "bytes=0-0," + "1-1," * 40
    assert parse_range(short_many[:MAX_RANGE_HEADER], SIZE) == ByteRange(0, 0)
    garbage_after = "bytes=0-0," + "no-such-range," * 20
    assert parse_range(garbage_after[:MAX_RANGE_HEADER], SIZE) == ByteRange(0, 0)


def _video(casework_video: Casework) -> tuple[SignedIn, str, bytes]:
    officer = casework_video.user("officer")
    report = casework_video.report(officer)
    seeded = casework_video.item(report, media="video")
    return casework_video.client(officer), seeded.item.id, seeded.derivatives["proxy"]


MEDIA_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "cross-origin-resource-policy": "same-origin",
}


def _assert_media_headers(response: Any) -> None:
    headers = response.headers
    for name, value in MEDIA_HEADERS.items():
        assert headers[name] == value


def test_whole_proxy_without_range_is_200_with_our_type(casework_video: Casework) -> None:
    client, item_id, proxy = _video(casework_video)
    r = client.get(f"/items/{item_id}/media/proxy")
    assert r.status_code == 200
    assert r.content == proxy
    assert r.headers["content-type"] == "video/mp4"
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-length"] == str(len(proxy))
    assert "content-range" not in r.headers
    _assert_media_headers(r)


def test_range_request_is_206_with_content_range(casework_video: Casework) -> None:
    client, item_id, proxy = _video(casework_video)
    r = client.get(f"/items/{item_id}/media/proxy", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206
    assert r.content == proxy[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(proxy)}"
    assert r.headers["content-length"] == "100"
    _assert_media_headers(r)


def test_suffix_and_open_ranges(casework_video: Casework) -> None:
    client, item_id, proxy = _video(casework_video)
    r = client.get(f"/items/{item_id}/media/proxy", headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == proxy[-10:]
    r = client.get(f"/items/{item_id}/media/proxy", headers={"Range": f"bytes={len(proxy) - 5}-"})
    assert r.status_code == 206 and r.content == proxy[-5:]
    assert r.headers["content-range"] == f"bytes {len(proxy) - 5}-{len(proxy) - 1}/{len(proxy)}"


def test_unsatisfiable_range_is_416_with_size(casework_video: Casework) -> None:
    client, item_id, proxy = _video(casework_video)
    for header in (f"bytes={len(proxy)}-", "bytes=50-10", "bytes=x-y"):
        r = client.get(f"/items/{item_id}/media/proxy", headers={"Range": header})
        assert r.status_code == 416, header
        assert r.headers["content-range"] == f"bytes */{len(proxy)}"
        assert r.content == b""
        _assert_media_headers(r)


def test_multi_range_gets_first_range_only(casework_video: Casework) -> None:
    client, item_id, proxy = _video(casework_video)
    r = client.get(f"/items/{item_id}/media/proxy", headers={"Range": "bytes=0-9,20-29,40-49"})
    assert r.status_code == 206
    assert r.headers["content-type"] == "video/mp4"  # never multipart/byteranges
    assert r.content == proxy[0:10]


def test_ten_thousand_ranges_are_answered_without_parsing_them(casework_video: Casework) -> None:
    client, item_id, proxy = _video(casework_video)
    hostile = "bytes=" + ",".join(f"{i}-{i}" for i in range(10_000))
    r = client.get(f"/items/{item_id}/media/proxy", headers={"Range": hostile})
    assert r.status_code == 200
    assert r.content == proxy


def test_if_range_with_another_etag_gets_the_whole_body(casework_video: Casework) -> None:
    client, item_id, proxy = _video(casework_video)
    first = client.get(f"/items/{item_id}/media/proxy", headers={"Range": "bytes=0-0"})
    etag = first.headers["etag"]
    r = client.get(f"/items/{item_id}/media/proxy", headers={"Range": "bytes=0-9", "If-Range": etag})
    assert r.status_code == 206
    r = client.get(f"/items/{item_id}/media/proxy", headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert r.status_code == 200 and r.content == proxy


def test_head_gives_headers_and_no_body(casework_video: Casework) -> None:
    client, item_id, _proxy = _video(casework_video)
    r = client.head(f"/items/{item_id}/media/proxy", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206
    assert r.headers["content-length"] == "100"
    assert r.content == b""


def test_one_custody_event_per_session_and_item_whatever_the_range(casework_video: Casework) -> None:
    client, item_id, _proxy = _video(casework_video)
    client.get(f"/items/{item_id}")  # the page view covers the poster it shows
    client.get(f"/items/{item_id}/media/proxy", headers={"Range": "bytes=0-"})
    client.get(f"/items/{item_id}/media/proxy", headers={"Range": "bytes=500-"})
    client.get(f"/items/{item_id}/media/proxy", headers={"Range": "bytes=1000-1999"})
    client.get(f"/items/{item_id}/media/poster")
    starts = casework_video.events("media.stream", item_id)
    assert len(starts) == 1
    assert starts[0].detail == {"kind": "proxy", "range": "bytes=0-"}
    assert starts[0].actor == client.user.email


@pytest.mark.parametrize("first_range", ["bytes=1-", "bytes=-100000", "bytes=500-", "bytes=1-1", None])
def test_a_stream_that_does_not_start_at_zero_is_audited_before_its_bytes(casework_video: Casework,
                                                                         first_range: str | None) -> None:
    """i11 item 5: ``Range: bytes=1-`` returned all but the first byte with no custody
    event. A session's first read of an item's media is audited whatever its range."""
    client, item_id, proxy = _video(casework_video)
    headers = {"Range": first_range} if first_range else {}
    r = client.get(f"/items/{item_id}/media/proxy", headers=headers)
    assert r.status_code in (200, 206) and r.content and r.content in proxy
    [start] = casework_video.events("media.stream", item_id)
    assert start.actor == client.user.email and start.detail == {"kind": "proxy", "range": first_range or ""}
    # Later segments of the same session are covered by that event...
    client.get(f"/items/{item_id}/media/proxy", headers={"Range": "bytes=0-"})
    assert len(casework_video.events("media.stream", item_id)) == 1
    # ...another session (even of the same officer) is a new stream start.
    other = casework_video.client(client.user)
    other.get(f"/items/{item_id}/media/proxy", headers={"Range": "bytes=2-"})
    assert len(casework_video.events("media.stream", item_id)) == 2
    # A HEAD or an unsatisfiable range sends no bytes and writes nothing.
    third = casework_video.client(client.user)
    third.head(f"/items/{item_id}/media/proxy")
    third.get(f"/items/{item_id}/media/proxy", headers={"Range": f"bytes={len(proxy)}-"})
    assert len(casework_video.events("media.stream", item_id)) == 2


@pytest.mark.parametrize("kind", ["thumbnail", "poster"])
def test_thumbnails_and_posters_without_a_page_view_are_audited_themselves(casework_video: Casework,
                                                                           kind: str) -> None:
    client, item_id, _proxy = _video(casework_video)
    for headers in ({}, {"Range": "bytes=1-"}):
        fresh = casework_video.client(client.user)
        r = fresh.get(f"/items/{item_id}/media/{kind}", headers=headers)
        assert r.status_code in (200, 206) and r.content
    events = casework_video.events("media.stream", item_id)
    assert [(e.detail or {}).get("kind") for e in events] == [kind, kind]
    # After an audited page view that shows them, they are covered by that view's event.
    viewer = casework_video.client(client.user)
    report_id = events[0].report_id
    viewer.get(f"/reports/{report_id}" if kind == "thumbnail" else f"/items/{item_id}")
    viewer.get(f"/items/{item_id}/media/{kind}", headers={"Range": "bytes=1-"})
    assert len(casework_video.events("media.stream", item_id)) == 2
    viewed = "report.viewed" if kind == "thumbnail" else "item.viewed"
    assert [e for e in casework_video.events(viewed) if e.report_id == report_id]


def test_cross_site_embedding_is_refused(casework_video: Casework) -> None:
    client, item_id, _proxy = _video(casework_video)
    r = client.get(f"/items/{item_id}/media/proxy", headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 404
    denied = casework_video.events("access.denied")
    assert [(e.detail or {}).get("subject") for e in denied] == [f"item:{item_id}"]
    assert denied[0].detail is not None and denied[0].detail["reason"] == "media.cross_site"


def test_a_forgotten_coverage_entry_means_one_more_event_never_one_fewer(casework_video: Casework) -> None:
    """The per-process record of audited reads is bounded; what it forgets is audited again."""
    from reviewer_ui import coverage

    casework_video.ctx.extras[coverage.EXTRAS_KEY] = coverage.Coverage(max_entries=1)
    client, first, _proxy = _video(casework_video)
    second = casework_video.item(casework_video.report(client.user), media="video").item.id
    for item_id in (first, second, first, second):
        client.get(f"/items/{item_id}/media/proxy", headers={"Range": "bytes=1-"})
    assert len(casework_video.events("media.stream", first)) == 2
    assert len(casework_video.events("media.stream", second)) == 2
