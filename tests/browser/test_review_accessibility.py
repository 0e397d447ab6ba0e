"""axe-core in real Chromium on the casework pages: the report list, a report page (with a
freshly issued link and its QR code), and the item page for an image, a video and an
infected file. Also: the image viewer zooms and pans by keyboard."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.browser.conftest import axe_violations, new_context
from tests.fixtures.casework import Casework, LiveReview

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


@pytest.fixture
def officer_page(chromium: Browser, live_review: LiveReview, casework_video: Casework) -> Iterator[Page]:
    officer = casework_video.user("officer")
    context: BrowserContext = new_context(chromium, bypass_csp=True)  # axe is injected as a script
    context.add_cookies(live_review.cookies(officer))  # type: ignore[arg-type]
    page = context.new_page()
    page.officer = officer  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        context.close()


def _assert_no_violations(page: Page) -> None:
    violations = axe_violations(page)
    assert violations == [], violations


def test_report_list_report_page_and_item_pages_have_no_axe_violations(
    officer_page: Page, live_review: LiveReview, casework_video: Casework
) -> None:
    officer = officer_page.officer  # type: ignore[attr-defined]
    report = casework_video.report(officer, "RTC/2026/0042")
    image = casework_video.item(report, filename="scene.jpg").item
    video = casework_video.item(report, media="video", filename="dashcam.mp4").item
    infected = casework_video.item(report, state="infected", derivatives={}, filename="bad.exe").item
    casework_video.item(report, state="processing", filename="still-working.mp4")
    base = live_review.base_url

    officer_page.goto(f"{base}/reports")
    assert officer_page.get_by_role("link", name="RTC/2026/0042").is_visible()
    _assert_no_violations(officer_page)

    officer_page.goto(f"{base}/reports/{report.id}")
    officer_page.get_by_label("Most files").fill("5")
    officer_page.get_by_role("button", name="Issue link").click()
    officer_page.wait_for_selector("#issued-url")
    assert officer_page.locator("img.qr").count() == 1
    _assert_no_violations(officer_page)

    for item in (image, video, infected):
        officer_page.goto(f"{base}/items/{item.id}")
        _assert_no_violations(officer_page)


def test_image_viewer_zooms_and_pans_by_keyboard(officer_page: Page, live_review: LiveReview,
                                                  casework_video: Casework) -> None:
    officer = officer_page.officer  # type: ignore[attr-defined]
    report = casework_video.report(officer)
    image = casework_video.item(report).item
    officer_page.goto(f"{live_review.base_url}/items/{image.id}")
    img = officer_page.locator(".viewer__img")
    officer_page.wait_for_function("() => document.querySelector('.viewer__img').complete")
    stage = officer_page.locator("#viewer-stage")
    stage.focus()
    officer_page.keyboard.press("+")
    officer_page.keyboard.press("+")
    # The level is said in pixels of the picture (i15 item 5: "100%" is actual size).
    assert officer_page.locator("[data-zoom-level]").inner_text().endswith("% of actual size")
    before = img.evaluate("el => el.style.transform")
    officer_page.keyboard.press("ArrowRight")
    after = img.evaluate("el => el.style.transform")
    assert before != after and "scale(1.5625)" in after
    officer_page.keyboard.press("0")
    assert officer_page.locator("[data-zoom-level]").inner_text().startswith("Fitted")
    officer_page.get_by_role("button", name="Zoom in").click()
    assert "scale(1.25)" in img.evaluate("el => el.style.transform")


def test_the_partner_item_page_has_no_axe_violations(chromium: Browser, live_review: LiveReview,
                                                     casework_video: Casework) -> None:
    """The partner's own item page (reviewer_ui/partner.py), image and video, with the
    contact and location grants on so every section is drawn."""
    import datetime as dt

    from storage.models import Share, utcnow

    officer = casework_video.user("officer")
    partner = casework_video.user("partner", org="CPS Accessibility")
    report = casework_video.report(officer, "RTC/2026/0043")
    image = casework_video.item(report, filename="scene.jpg",
                                metadata={"exif": {"GPSInfo": {"GPSLatitude": "51.5"}}}).item
    video = casework_video.item(report, media="video", filename="dashcam.mp4").item
    with casework_video.db.write() as session:
        session.add(Share(report_id=report.id, partner_user_id=partner.id, allow_download=True, grant_contact=True,
                          grant_location=True, created_by=officer.id, expires_at=utcnow() + dt.timedelta(days=1)))
    context: BrowserContext = new_context(chromium, bypass_csp=True)
    context.add_cookies(live_review.cookies(partner))  # type: ignore[arg-type]
    page = context.new_page()
    try:
        for item in (image, video):
            page.goto(f"{live_review.base_url}/items/{item.id}")
            assert page.get_by_role("heading", name="Integrity").is_visible()
            _assert_no_violations(page)
    finally:
        context.close()
