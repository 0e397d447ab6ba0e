"""The upload form in real Chromium: by keyboard alone, with JavaScript off, under its own
CSP (the hashing worker's WebAssembly included), by drag-and-drop, with errors tied to
their fields, and with the camera offered on a phone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.browser.conftest import Citizen, new_context
from tests.browser.media import jpeg, mp4

pytestmark = pytest.mark.browser

RECEIPT = re.compile(r"/u/receipt/[0-9a-f]{32}-[A-Za-z0-9_-]{22}$")


def receipt_hashes(page: Page) -> dict[str, tuple[str, str]]:
    """name -> (sha256, browser check) from the receipt page."""
    page.wait_for_url(RECEIPT, timeout=60_000)
    rows = page.locator("#receipt-files > li")
    out = {}
    for i in range(rows.count()):
        row = rows.nth(i)
        out[row.locator(".file-name").inner_text()] = (
            row.locator(".hash").get_attribute("data-sha256") or "",
            row.locator(".client-check").get_attribute("data-match") or "",
        )
    return out


def focus_is_visible(page: Page) -> bool:
    """The focused element draws a focus indicator (an outline or our box-shadow ring)."""
    return bool(page.evaluate(
        """() => { const s = getComputedStyle(document.activeElement);
                   return (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2) || s.boxShadow !== 'none'; }"""
    ))


def tab_to(page: Page, element_id: str, *, limit: int = 40) -> list[str]:
    """Press Tab until ``#element_id`` has focus; every stop on the way must show focus."""
    stops = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        current = page.evaluate("() => document.activeElement.id || document.activeElement.tagName")
        stops.append(current)
        assert focus_is_visible(page), f"no visible focus on {current}"
        if current == element_id:
            return stops
    raise AssertionError(f"Tab never reached #{element_id}: {stops}")


def test_keyboard_alone_goes_from_the_link_to_the_receipt_with_visible_focus(
    chromium: Browser, citizen: Citizen, tmp_path: Path
) -> None:
    photo = tmp_path / "scene.jpg"
    expected = jpeg(photo, 300_000, seed=3)
    context = new_context(chromium, viewport={"width": 320, "height": 640})
    try:
        page = context.new_page()
        # Playwright intercepts the file chooser once something listens for it; listening
        # from the start means the Space below can never reach Chromium before that.
        page.on("filechooser", lambda _chooser: None)
        page.goto(citizen.link_url)
        # The first Tab stop is the skip link, and it works.
        page.keyboard.press("Tab")
        expect(page.locator(".skip-link")).to_be_focused()
        assert focus_is_visible(page)
        page.keyboard.press("Enter")
        expect(page.locator("#main")).to_be_focused()

        tab_to(page, "description")
        page.keyboard.type("A cyclist knocked over by a van turning left")
        stops = tab_to(page, "occurred_at")
        assert stops == ["occurred_at"]
        page.keyboard.type("Yesterday about 8am")
        tab_to(page, "location")
        page.keyboard.type("High Street")
        tab_to(page, "declaration")
        page.keyboard.press("Space")
        expect(page.locator("#declaration")).to_be_checked()
        tab_to(page, "files")
        with page.expect_file_chooser() as chooser:
            page.keyboard.press("Space")
        chooser.value.set_files(str(photo))
        expect(page.locator("#chosen-list li")).to_have_count(1)
        stops = tab_to(page, "send")
        assert "BUTTON" in stops  # the Remove button of the chosen file is reachable too
        page.keyboard.press("Enter")

        assert receipt_hashes(page) == {"scene.jpg": (expected, "yes")}
        page.keyboard.press("Tab")
        expect(page.locator(".skip-link")).to_be_focused()
    finally:
        context.close()


def test_without_javascript_the_plain_form_sends_two_files_and_shows_the_receipt(
    chromium: Browser, citizen: Citizen, tmp_path: Path
) -> None:
    photo, video = tmp_path / "photo.jpg", tmp_path / "clip.mp4"
    photo_sha = jpeg(photo, 400_000, seed=1)
    video_sha = mp4(video, 3_000_000, seed=2)
    context = new_context(chromium, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(citizen.link_url)
        expect(page.locator("#dropzone-text")).to_be_hidden()  # nothing the script would add
        page.get_by_label("What do the photos or videos show?").fill("Shop window smashed")
        page.get_by_label("Your name (optional)").fill("A. Citizen")
        page.get_by_label("I have read the declaration and I agree with it").check()
        page.get_by_label("Choose photos and videos").set_input_files([str(photo), str(video)])
        with page.expect_navigation():
            page.get_by_role("button", name="Send files").click()
        assert RECEIPT.search(page.url), page.locator("main").inner_text()
        # No script ran, so nobody computed a hash in the browser.
        assert receipt_hashes(page) == {"photo.jpg": (photo_sha, "not-checked"), "clip.mp4": (video_sha, "not-checked")}
        expect(page.locator("#report-reference")).to_have_text(citizen.report_reference)
    finally:
        context.close()


def test_without_javascript_the_browser_itself_asks_for_the_declaration(
    chromium: Browser, citizen: Citizen, tmp_path: Path
) -> None:
    photo = tmp_path / "photo.jpg"
    jpeg(photo)
    context = new_context(chromium, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(citizen.link_url)
        page.get_by_label("What do the photos or videos show?").fill("Graffiti")
        page.get_by_label("Choose photos and videos").set_input_files(str(photo))
        page.get_by_role("button", name="Send files").click()
        # `required` stops the post: still on the form, the checkbox reported invalid.
        assert page.url.endswith("/u/")
        assert page.evaluate("() => document.querySelector('#declaration').validity.valueMissing")
    finally:
        context.close()


def test_the_page_runs_under_its_own_csp_and_the_worker_hash_matches(
    chromium: Browser, citizen: Citizen, tmp_path: Path
) -> None:
    """No bypass here: the real CSP (no inline script or style; WebAssembly allowed for
    hash-wasm) is enforced, and nothing is refused."""
    photo = tmp_path / "csp.jpg"
    expected = jpeg(photo, 2_000_000, seed=5)
    context = new_context(chromium)
    refused: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            refused.append(message.text)

    try:
        page = context.new_page()
        page.on("console", on_console)
        page.on("worker", lambda worker: worker.on("console", on_console))  # type: ignore[arg-type]
        page.add_init_script(
            "document.addEventListener('securitypolicyviolation', e => console.error('Refused to ' + e.violatedDirective))")
        page.goto(citizen.link_url)
        page.get_by_label("What do the photos or videos show?").fill("CSP")
        page.get_by_label("I have read the declaration and I agree with it").check()
        page.get_by_label("Choose photos and videos").set_input_files(str(photo))
        page.get_by_role("button", name="Send files").click()
        assert receipt_hashes(page) == {"csp.jpg": (expected, "yes")}
        assert refused == []
    finally:
        context.close()


def test_files_dropped_on_the_drop_zone_are_sent(chromium: Browser, citizen: Citizen) -> None:
    context = new_context(chromium)
    try:
        page = context.new_page()
        page.goto(citizen.link_url)
        expect(page.locator("#dropzone-text")).to_be_visible()
        page.get_by_label("What do the photos or videos show?").fill("Dropped")
        page.get_by_label("I have read the declaration and I agree with it").check()
        page.evaluate(
            """() => {
                const head = [0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00];
                const bytes = new Uint8Array(50000); bytes.set(head);
                const transfer = new DataTransfer();
                transfer.items.add(new File([bytes], 'dropped.jpg', {type: 'image/jpeg'}));
                const zone = document.querySelector('#dropzone');
                for (const type of ['dragenter', 'dragover', 'drop']) {
                    zone.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
                }
            }"""
        )
        expect(page.locator("#chosen-list li")).to_have_count(1)
        expect(page.locator("#chosen-list")).to_contain_text("dropped.jpg")
        page.get_by_role("button", name="Send files").click()
        assert list(receipt_hashes(page)) == ["dropped.jpg"]
    finally:
        context.close()


def test_errors_are_listed_on_top_and_tied_to_their_fields(chromium: Browser, citizen: Citizen) -> None:
    context = new_context(chromium)
    try:
        page = context.new_page()
        page.goto(citizen.link_url)
        page.get_by_role("button", name="Send files").click()
        summary = page.locator("#error-summary")
        expect(summary).to_be_focused()
        expect(summary).to_have_attribute("role", "alert")
        expect(summary.locator("a")).to_have_text([
            "Describe what the photos or videos show",
            "Tick the box to confirm the declaration",
            "Choose at least one photo or video",
        ])
        description = page.locator("#description")
        expect(description).to_have_attribute("aria-invalid", "true")
        expect(description).to_have_accessible_description(re.compile("Error: Describe what the photos"))
        expect(page.locator("#files")).to_have_accessible_description(re.compile("Error: Choose at least one"))
        summary.get_by_role("link", name="Tick the box to confirm the declaration").click()
        expect(page.locator("#declaration")).to_be_focused()
        # Fixing a field and sending again clears its error.
        page.locator("#description").fill("Now described")
        page.get_by_role("button", name="Send files").click()
        expect(summary.locator("a")).to_have_count(2)
        expect(description).not_to_have_attribute("aria-invalid", "true")
    finally:
        context.close()


def test_a_file_over_the_limit_is_flagged_before_anything_is_sent(
    chromium: Browser, citizen: Citizen, tmp_path: Path
) -> None:
    link_url, _ = citizen.new_link(max_bytes=100_000)
    big = tmp_path / "big.jpg"
    jpeg(big, 200_000)
    context = new_context(chromium)
    try:
        page = context.new_page()
        page.goto(link_url)
        expect(page.locator("#limits")).to_contain_text("97.7 KB in total")
        page.get_by_label("Choose photos and videos").set_input_files(str(big))
        expect(page.locator("#chosen-list")).to_contain_text("larger than 97.7 KB")
    finally:
        context.close()


def test_a_phone_is_offered_its_camera(chromium: Browser, citizen: Citizen) -> None:
    context = new_context(chromium, viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(citizen.link_url)
        camera = page.get_by_label("Or take a photo or video now")
        expect(camera).to_be_visible()
        expect(camera).to_have_attribute("capture", "environment")
        expect(camera).to_have_attribute("name", "files")
    finally:
        context.close()


def test_a_file_that_is_not_a_photo_or_video_is_refused_in_plain_words_and_the_rest_arrive(
    chromium: Browser, citizen: Citizen, tmp_path: Path
) -> None:
    """Threat: a renamed HTML page. The page cannot know (the name says .jpg); the server
    sniffs the first bytes, refuses it at once, and the page says so and goes on."""
    fake = tmp_path / "holiday.jpg"
    fake.write_bytes(b"<!doctype html><script>alert(1)</script>" + b" " * 5000)
    good = tmp_path / "real.jpg"
    good_sha = jpeg(good, 80_000, seed=9)
    context = new_context(chromium)
    try:
        page = context.new_page()
        page.goto(citizen.link_url)
        page.get_by_label("What do the photos or videos show?").fill("Two photos")
        page.get_by_label("I have read the declaration and I agree with it").check()
        page.get_by_label("Choose photos and videos").set_input_files([str(fake), str(good)])
        page.get_by_role("button", name="Send files").click()
        heading = page.locator("#progress-heading")
        expect(heading).to_have_text("1 file was not sent", timeout=30_000)
        expect(heading).to_be_focused()
        expect(page.locator("#file-0-state")).to_have_text(
            "Not sent. This is not a photo or video we can accept. Please choose the original photo or video file.")
        expect(page.locator("#file-1-state")).to_contain_text("Received")
        page.get_by_role("link", name="See your receipt").click()
        assert receipt_hashes(page) == {"real.jpg": (good_sha, "yes")}
    finally:
        context.close()
