"""Every citizen page in real Chromium: axe-core finds no WCAG 2.2 A/AA violation, and
nothing scrolls sideways at 320 px wide, at 200% zoom (a 1280 px window at 200% lays out
640 CSS px at twice the pixel density), or with text alone made 200% bigger on a 320 px
phone (WCAG 1.4.4)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Citizen, axe_violations, new_context, no_horizontal_scroll
from tests.browser.media import jpeg

pytestmark = pytest.mark.browser

VIEWPORTS = {
    "phone-320": {"viewport": {"width": 320, "height": 640}, "device_scale_factor": 1},
    "zoom-200": {"viewport": {"width": 640, "height": 512}, "device_scale_factor": 2},
    "text-200-phone-320": {"viewport": {"width": 320, "height": 640}, "device_scale_factor": 1},
}
TEXT_200 = "document.addEventListener('DOMContentLoaded', () => { document.documentElement.style.fontSize = '200%'; })"


def walk_citizen_pages(page: Page, citizen: Citizen, tmp_path: Path) -> Iterator[str]:
    """Visit every page and state a citizen can see, yielding a name at each one."""
    base = citizen.server.base_url
    page.goto(f"{base}/u/{secrets.token_urlsafe(32)}")
    expect(page.get_by_role("heading", level=1)).to_have_text("This link does not work")
    yield "link problem"

    page.goto(f"{base}/u/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Open the link from your message")
    yield "no session"

    page.goto(citizen.link_url)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Send photos and videos")
    yield "upload page"

    page.get_by_role("button", name="Send files").click()
    expect(page.locator("#error-summary")).to_be_focused()
    yield "upload page with errors"

    photos = [tmp_path / "front.jpg", tmp_path / "back.jpg"]
    for i, path in enumerate(photos):
        jpeg(path, 150_000 + i, seed=i)
    page.get_by_label("What do the photos or videos show?").fill("The van that hit my car")
    page.get_by_label("Choose photos and videos").set_input_files([str(p) for p in photos])
    expect(page.locator("#chosen-list li")).to_have_count(2)
    page.get_by_label("I have read the declaration and I agree with it").check()
    yield "upload page with files chosen"

    page.get_by_role("button", name="Send files").click()
    page.wait_for_url(re.compile(r"/u/receipt/"))
    expect(page.locator("#receipt-files > li")).to_have_count(2)
    yield "receipt"

    page.get_by_role("link", name="See the status of your files").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Status of your files")
    yield "status"

    page.goto(f"{base}/u/receipt/not-a-receipt")
    expect(page.get_by_role("heading", level=1)).to_have_text("We could not find this receipt")
    yield "receipt missing"

    # The page the plain (no-JavaScript) form gets back when the server refuses a post:
    # here, a file posted without the declaration, bypassing the browser's own checks.
    page.goto(citizen.link_url)
    with page.expect_navigation():
        page.evaluate(
            """() => { const t = new DataTransfer();
                       t.items.add(new File(['not a photo'], 'x.jpg', {type: 'image/jpeg'}));
                       document.querySelector('#files').files = t.files;
                       document.querySelector('#upload-form').submit(); }"""
        )
    expect(page.get_by_role("heading", level=1)).to_have_text("Your files were not sent")
    yield "upload error"


@pytest.mark.parametrize("viewport", sorted(VIEWPORTS))
def test_every_citizen_page_passes_axe_and_fits_without_sideways_scrolling(
    chromium: Browser, citizen: Citizen, tmp_path: Path, viewport: str
) -> None:
    context = new_context(chromium, bypass_csp=True, **VIEWPORTS[viewport])
    try:
        if viewport.startswith("text-200"):
            context.add_init_script(TEXT_200)
        page = context.new_page()
        seen = []
        for name in walk_citizen_pages(page, citizen, tmp_path):
            seen.append(name)
            assert axe_violations(page) == [], name
            assert no_horizontal_scroll(page), name
        assert len(seen) == 9
    finally:
        context.close()


def test_progress_view_passes_axe_while_paused(chromium: Browser, citizen: Citizen, tmp_path: Path) -> None:
    context = new_context(chromium, bypass_csp=True, viewport={"width": 320, "height": 640})
    try:
        page = context.new_page()
        # Slow the network so that the upload is still running when we look at it.
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 256 * 1024})
        video = tmp_path / "clip.jpg"
        jpeg(video, 20 << 20)
        page.goto(citizen.link_url)
        page.get_by_label("What do the photos or videos show?").fill("Dashcam")
        page.get_by_label("Choose photos and videos").set_input_files(str(video))
        page.get_by_label("I have read the declaration and I agree with it").check()
        page.get_by_role("button", name="Send files").click()
        expect(page.locator("#progress-heading")).to_be_focused()
        expect(page.locator("#file-0-state")).to_contain_text("sent")
        page.get_by_role("button", name="Pause").click()
        expect(page.get_by_role("button", name="Resume")).to_be_visible()
        expect(page.locator("#overall-text")).to_contain_text("Paused")
        assert axe_violations(page) == []
        assert no_horizontal_scroll(page)
    finally:
        context.close()
