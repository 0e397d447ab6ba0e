"""The item page as a workspace, in real Chromium (i15 items 4 and 5): no stream event on
page load and one when playback starts; frame step and speed; "save this frame" makes a
still that appears with its provenance; a photo zooms to 100% of its full-resolution
copy; one view after posting a note; tabs that follow the WAI-ARIA pattern; axe clean."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import axe_violations, new_context
from tests.fixtures.casework import Casework, LiveReview
from tests.reviewer_ui.test_stills import FPS, FRAMES, colour_clip, drain

pytestmark = pytest.mark.browser  # SQLite (tests/conftest.py), but the journeys marked both_databases


def _page(chromium: Browser, live: LiveReview, user: object, **kw: object) -> Page:
    context = new_context(chromium, bypass_csp=True, **kw)
    context.add_cookies(live.cookies(user))  # type: ignore[arg-type]
    return context.new_page()


@pytest.mark.both_databases  # an i15 journey: on SQLite and PostgreSQL
def test_play_is_the_stream_start_and_a_saved_frame_appears_with_its_provenance(
        live_review: LiveReview, chromium: Browser, tmp_path: Path) -> None:
    cw: Casework = live_review.casework
    officer = cw.user("officer")
    item = cw.item(cw.report(officer), media="video", mp4=colour_clip(tmp_path), filename="dashcam.mp4",
                   metadata={"duration_seconds": FRAMES / FPS,
                             "streams": [{"type": "video", "frame_rate": f"{FPS}/1"}]}).item
    page = _page(chromium, live_review, officer, viewport={"width": 1280, "height": 900})
    proxy_requests: list[str] = []
    page.on("request", lambda r: proxy_requests.append(r.url) if "/media/proxy" in r.url else None)
    page.goto(f"{live_review.base_url}/items/{item.id}")
    page.wait_for_load_state("networkidle")
    assert proxy_requests == [] and cw.events("media.stream", item.id) == []
    assert len(cw.events("item.viewed", item.id)) == 1
    video = page.locator("video")
    assert video.get_attribute("controlslist") == "nodownload noremoteplayback"
    assert video.get_attribute("disablepictureinpicture") is not None

    page.evaluate("async () => { const v = document.querySelector('video'); v.muted = true; await v.play(); }")
    page.wait_for_function("() => document.querySelector('video').currentTime > 0.2")
    [stream] = cw.events("media.stream", item.id)
    assert stream.actor == officer.email and (stream.detail or {}).get("kind") == "proxy"

    # Speed and frame step, by the page's own controls.
    page.select_option("#video-speed", "0.25")
    assert page.evaluate("() => document.querySelector('video').playbackRate") == 0.25
    page.evaluate("() => document.querySelector('video').pause()")
    page.evaluate("() => { document.querySelector('video').currentTime = 0.55; }")
    page.wait_for_function("() => document.querySelector('[data-video-time]').textContent === '0:00.500'")
    page.get_by_role("button", name="Next frame").click()
    page.wait_for_function("() => document.querySelector('[data-video-time]').textContent === '0:00.600'")
    page.get_by_role("button", name="Next frame").click()
    page.wait_for_function("() => document.querySelector('[data-video-time]').textContent === '0:00.700'")
    page.get_by_role("button", name="Previous frame").click()
    page.wait_for_function("() => document.querySelector('[data-video-time]').textContent === '0:00.600'")
    assert page.input_value("#still-at").startswith("0.6")

    page.get_by_role("button", name="Save this frame").click()
    page.wait_for_selector("[data-flash] .notice")
    assert "Saving the frame at 0:00.600" in page.locator("[data-flash]").inner_text()
    assert drain(cw, tmp_path) == ["saved"]
    page.reload()
    still = page.get_by_role("img", name="Still at 0:00.600 of dashcam.mp4")
    still.wait_for()
    assert page.evaluate("(img) => img.complete && img.naturalWidth", still.element_handle()) == 64
    [saved] = cw.events("item.still_saved", item.id)
    page.locator(".stills summary", has_text="How it was made").click()
    provenance = page.locator(".stills").inner_text()
    assert (saved.detail or {})["sha256"] in provenance and "-ss 0.600000" in provenance
    assert item.sha256 in provenance  # the copy it was taken from (here the seeded proxy is the clip)
    data = cw.client(officer).get(f"/items/{item.id}/media/still-0.600").content
    assert abs(Image.open(io.BytesIO(data)).convert("RGB").getpixel((32, 24))[0] - 60) <= 3  # frame 6
    # The playing copy's stream event is still the only one of this visit's play.
    assert [e for e in cw.events("media.stream", item.id) if (e.detail or {}).get("kind") == "proxy"] == [stream]
    assert axe_violations(page) == []


def test_a_photo_zooms_to_100_percent_of_its_full_resolution_copy(live_review: LiveReview, chromium: Browser) -> None:
    cw: Casework = live_review.casework
    officer = cw.user("officer")
    big = Image.new("RGB", (2600, 1700), (20, 40, 60))
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90)
    small = io.BytesIO()
    big.resize((2048, 1339)).save(small, "JPEG", quality=85)
    item = cw.item(cw.report(officer), filename="plate.jpg", derivatives={
        "full": ("image/jpeg", buf.getvalue()), "preview": ("image/jpeg", small.getvalue()),
        "thumbnail": ("image/jpeg", small.getvalue())}).item
    with cw.db.write() as session:  # the worker records the copy's size
        from sqlmodel import col, select

        from storage.models import Derivative
        row = session.exec(select(Derivative).where(col(Derivative.item_id) == item.id,
                                                    col(Derivative.kind) == "full")).one()
        row.width, row.height = 2600, 1700
        session.add(row)
    page = _page(chromium, live_review, officer, viewport={"width": 1280, "height": 900})
    page.goto(f"{live_review.base_url}/items/{item.id}")
    img = page.locator(".viewer__img")
    assert img.get_attribute("src", timeout=5000).endswith("/media/preview")  # type: ignore[union-attr]
    assert "Fitted" in page.locator("[data-zoom-level]").inner_text()
    # Keyboard: focus the picture, 1 = actual size.
    page.locator(".viewer__stage").focus()
    page.keyboard.press("1")
    page.wait_for_function("() => document.querySelector('.viewer__img').naturalWidth === 2600")
    assert page.locator("[data-zoom-level]").inner_text() == "100% of actual size"
    # One pixel of the copy is one CSS pixel on screen: the element is scaled from the
    # stage's size, and the picture fills it by object-fit: contain.
    shown = page.evaluate("""() => {
        const img = document.querySelector('.viewer__img'), stage = img.parentElement;
        const fit = Math.min(stage.clientWidth / 2600, stage.clientHeight / 1700);
        return img.getBoundingClientRect().width / stage.clientWidth * fit * 2600;
    }""")
    assert abs(shown - 2600) < 2, shown
    page.keyboard.press("ArrowRight")
    page.keyboard.press("0")
    assert page.locator("[data-zoom-level]").inner_text().startswith("Fitted")
    page.get_by_role("button", name="Actual size (100%)").click()
    assert page.locator("[data-zoom-level]").inner_text() == "100% of actual size"
    # Covered by the page view: no media.stream for the photo's copies.
    assert cw.events("media.stream", item.id) == [] and len(cw.events("item.viewed", item.id)) == 1


def test_tabs_and_one_view_after_a_note(live_review: LiveReview, chromium: Browser) -> None:
    cw: Casework = live_review.casework
    officer = cw.user("officer")
    item = cw.item(cw.report(officer), filename="scene.jpg").item
    page = _page(chromium, live_review, officer, viewport={"width": 1280, "height": 900})
    page.goto(f"{live_review.base_url}/items/{item.id}")
    tabs = page.get_by_role("tab")
    assert tabs.count() >= 4 and page.get_by_role("tablist", name="Item panels").count() == 1
    assert page.get_by_role("tab", selected=True).inner_text() == "Metadata"
    assert page.locator("#panel-custody").is_hidden()
    # Arrow keys move between tabs (roving tabindex), as the WAI-ARIA pattern says.
    page.get_by_role("tab", name="Metadata").focus()
    page.keyboard.press("End")
    assert page.get_by_role("tab", selected=True).inner_text() == "Custody"
    assert page.locator("#panel-custody").is_visible()
    page.keyboard.press("Home")
    assert page.get_by_role("tab", selected=True).inner_text() == "Metadata"
    page.get_by_role("tab", name="Notes and tags").click()
    page.fill("#note-body", "The plate reads AB12 CDE.")
    page.get_by_role("button", name="Add note").click()
    expect(page.locator("[data-flash]")).to_have_text("Note added.")  # waits for the announcement
    assert page.locator("[data-flash]").get_attribute("role") == "status"
    # Back on the Notes panel (the redirect's #notes), with the note; still one view.
    assert page.get_by_role("tab", selected=True).inner_text() == "Notes and tags"
    assert "The plate reads AB12 CDE." in page.locator("#panel-notes").inner_text()
    assert len(cw.events("item.viewed", item.id)) == 1
    assert axe_violations(page) == []
    # On a narrow screen the panels stack: no tabs, every panel shown.
    page.set_viewport_size({"width": 320, "height": 640})
    page.wait_for_function("() => !document.querySelector('.workspace').classList.contains('is-tabbed')")
    assert page.get_by_role("tab").count() == 0 and page.locator("#panel-custody").is_visible()


def test_after_the_code_the_download_completes_with_the_reason_in_the_ledger(
        live_review: LiveReview, chromium: Browser) -> None:
    """i15 item 5: the reason survives the step-up and the original downloads."""
    import datetime as dt

    from reviewer_ui import mfa, sessions
    from storage.models import StaffSession, User, utcnow

    cw: Casework = live_review.casework
    officer = cw.user("officer")
    secret = mfa.new_secret()
    with cw.db.write() as session:
        row = session.get(User, officer.id)
        assert row is not None
        row.totp_secret = mfa.seal(cw.ctx.secret, secret, officer.id)
        session.add(row)
    item = cw.item(cw.report(officer), filename="crash.jpg").item
    cookies = live_review.cookies(officer)
    with cw.db.write() as session:  # the last code was ten minutes ago: past the step-up window
        staff = session.get(StaffSession, sessions.session_id(cookies[0]["value"]))
        assert staff is not None
        staff.created_at = staff.created_at - dt.timedelta(minutes=10)
        session.add(staff)
    context = new_context(chromium, bypass_csp=True, accept_downloads=True)
    context.add_cookies(cookies)  # type: ignore[arg-type]
    page = context.new_page()
    try:
        page.goto(f"{live_review.base_url}/items/{item.id}")
        reason = "Disclosure to CPS, case file 12"
        page.get_by_label("Reason for downloading the original").fill(reason)
        page.get_by_role("button", name="Download original").click()
        page.wait_for_selector("h1:has-text('Confirm it is you')")
        assert reason in page.locator("main").inner_text()
        assert cw.events("item.original_downloaded") == []
        page.get_by_label("6-digit code").fill(mfa.code_at(secret, utcnow()))
        with page.expect_download() as info:
            page.get_by_role("button", name="Confirm and carry out").click()
        download = info.value
        assert download.suggested_filename == "crash.jpg"
        assert Path(download.path()).read_bytes()[:2] == b"\xff\xd8"
        [event] = cw.events("item.original_downloaded", item.id)
        assert event.actor == officer.email and (event.detail or {})["reason"] == reason
        assert axe_violations(page) == []
    finally:
        context.close()
