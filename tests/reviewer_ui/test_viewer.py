"""The viewer: image and video pages, watermark, metadata, custody timeline, states with
no preview, and the original only as an audited download with a reason."""

from __future__ import annotations

import asyncio

from sqlmodel import col, select

from storage.blobs.protocol import put_bytes
from storage.models import Derivative, EvidenceItem
from tests.fixtures.casework import Casework


def test_image_page_has_zoom_viewer_watermark_and_is_audited(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    seeded = casework.item(report, filename="crash.jpg")
    page = casework.client(officer).get(f"/items/{seeded.item.id}")
    assert page.status_code == 200
    html = page.text
    assert f'src="/items/{seeded.item.id}/media/preview"' in html
    assert "data-viewer" in html and 'data-zoom="in"' in html and 'tabindex="0"' in html
    assert f"{officer.display_name} · " in html and 'class="watermark"' in html
    assert '<script src="/static/casework.js"' in html and "<style" not in html and " style=" not in html
    # Never a storage key or an original reference in the page (VL-06).
    assert seeded.item.blob_key not in html and "originals/" not in html and "derivatives/" not in html
    assert seeded.item.sha256 in html  # the metadata panel
    [viewed] = casework.events("item.viewed", seeded.item.id)
    assert viewed.actor == officer.email


def test_video_page_plays_the_proxy_with_poster(casework_video: Casework) -> None:
    officer = casework_video.user("officer")
    report = casework_video.report(officer)
    seeded = casework_video.item(report, media="video", filename="dashcam.mp4")
    html = casework_video.client(officer).get(f"/items/{seeded.item.id}").text
    assert "<video" in html and f'<source src="/items/{seeded.item.id}/media/proxy" type="video/mp4">' in html
    assert f'poster="/items/{seeded.item.id}/media/poster"' in html
    assert 'class="watermark"' in html


def test_custody_timeline_lists_the_items_events(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    item = casework.item(report).item
    client = casework.client(officer)
    client.get(f"/items/{item.id}/media/preview")
    client.get(f"/items/{item.id}")
    html = client.get(f"/items/{item.id}").text
    assert "media.stream" in html and "item.viewed" in html  # the first view shows in the second


def test_hostile_metadata_is_text(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    item = casework.item(report, metadata={"exif": {"Make": "<script>alert(1)</script>", "GPS": {"lat": 51.5}}}).item
    html = casework.client(officer).get(f"/items/{item.id}").text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "exif.GPS.lat" in html


def test_infected_item_shows_its_state_and_no_preview(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    preview = ("image/jpeg", b"\xff\xd8\xff\xe0fake")
    item = casework.item(report, state="infected", derivatives={"preview": preview, "thumbnail": preview}).item
    client = casework.client(officer)
    html = client.get(f"/items/{item.id}").text
    assert "virus scanner found malware" in html and "No preview" in html
    assert "/media/" not in html
    for kind in ("preview", "thumbnail", "proxy", "poster"):
        r = client.get(f"/items/{item.id}/media/{kind}")
        assert r.status_code == 404, kind
    assert len(casework.events("access.denied", item.id)) == 4
    grid = client.get(f"/reports/{report.id}").text
    assert f"/items/{item.id}/media/thumbnail" not in grid


def test_states_without_preview(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    client = casework.client(officer)
    for state, words in [("unscannable", "could not be scanned"), ("rejected", "Not an allowed file type"),
                         ("processing", "previews are being made")]:
        item = casework.item(report, state=state).item
        html = client.get(f"/items/{item.id}").text
        assert words in html and "No preview" in html, state
        assert client.get(f"/items/{item.id}/media/preview").status_code == 404


def test_a_derivative_claiming_html_is_never_served(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    item = casework.item(report).item
    key = asyncio.run(put_bytes(casework.store, b"<html><script>alert(1)</script>", "derivatives"))
    with casework.db.write() as session:
        row = session.exec(select(Derivative).where(col(Derivative.item_id) == item.id,
                                                    col(Derivative.kind) == "preview")).one()
        row.blob_key, row.mime_type = key, "text/html"
        session.add(row)
    assert casework.client(officer).get(f"/items/{item.id}/media/preview").status_code == 404


def test_download_needs_a_reason_and_is_an_attachment(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    seeded = casework.item(report, filename='evil"\r\nX-Injected: 1;.html')
    client = casework.client(officer)
    r = client.post(f"/items/{seeded.item.id}/original", {"reason": "short"})
    assert r.status_code == 400 and "Give a reason" in r.text
    assert casework.events("item.original_downloaded") == []
    reason = "Disclosure to CPS under case file 12"
    r = client.post(f"/items/{seeded.item.id}/original", {"reason": reason})
    assert r.status_code == 200
    assert r.content == seeded.original
    assert r.headers["content-type"] == "application/octet-stream"
    disposition = r.headers["content-disposition"]
    # The suffix is the sniffed type's (JPEG), not the citizen's ".html" (BF-15).
    assert disposition.startswith('attachment; filename="evil_X-Injected__1.jpg"')
    assert "\r" not in disposition and "\n" not in disposition and "x-injected" not in r.headers
    assert r.headers["content-security-policy"] == "sandbox; default-src 'none'"
    assert r.headers["cache-control"] == "no-store" and r.headers["x-content-type-options"] == "nosniff"
    [event] = casework.events("item.original_downloaded", seeded.item.id)
    assert event.detail is not None and event.detail["reason"] == reason and event.detail["sha256"] == seeded.item.sha256


def test_a_long_name_keeps_the_sniffed_suffix_not_the_citizens(casework: Casework) -> None:
    """i12 item 3: cutting a long name at 200 characters turned "<stem>.html.jpg" into
    ".html"; the stem is shortened instead and the suffix comes from the sniffed type."""
    officer = casework.user("officer")
    report = casework.report(officer)
    client = casework.client(officer)
    reason = "Disclosure to CPS under case file 12"
    for name in ["a" * 196 + ".html.jpg", "é" * 190 + ".html.jpg", "b" * 240 + ".jpg.html", "noext" + "c" * 240]:
        seeded = casework.item(report, filename=name)  # sniffed as image/jpeg
        r = client.post(f"/items/{seeded.item.id}/original", {"reason": reason})
        assert r.status_code == 200
        disposition = r.headers["content-disposition"]
        ascii_name = disposition.split('filename="', 1)[1].split('"', 1)[0]
        utf8_name = disposition.split("filename*=UTF-8''", 1)[1]
        assert ascii_name.endswith(".jpg") and utf8_name.endswith(".jpg"), name
        assert ".html" not in ascii_name[-10:] and "html" not in utf8_name[-10:], name
        assert len(ascii_name) <= 160


def test_original_is_never_reachable_by_get(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    item = casework.item(report).item
    client = casework.client(officer)
    assert client.get(f"/items/{item.id}/original").status_code in (404, 405)
    assert client.get(f"/items/{item.id}/media/original").status_code == 404


def test_infected_original_only_for_admin(casework: Casework) -> None:
    officer = casework.user("officer")
    admin = casework.user("admin")
    report = casework.report(officer)
    item = casework.item(report, state="infected", derivatives={}).item
    reason = "Forensic examination of the sample"
    assert casework.client(officer).post(f"/items/{item.id}/original", {"reason": reason}).status_code == 404
    r = casework.client(admin).post(f"/items/{item.id}/original", {"reason": reason})
    assert r.status_code == 200 and r.headers["content-disposition"].startswith("attachment")
    with casework.db.read() as session:
        assert session.get(EvidenceItem, item.id) is not None


def test_original_download_asks_for_a_fresh_code_after_five_minutes(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    item = casework.item(report).item
    client = casework.client(officer, verified_seconds_ago=600)
    r = client.post(f"/items/{item.id}/original", {"reason": "Disclosure to CPS under case file 12"})
    # The form is held on a code page (tests/reviewer_ui/test_step_up_keeps_the_form.py).
    assert r.status_code == 403 and "Confirm it is you" in r.text
    assert casework.events("item.original_downloaded") == []
