"""The page tells the citizen the truth when things go wrong (issue 17.7): when every
file is refused it says plainly that nothing was received and what to do (no full
progress bars, no "keep this page open", no receipt of files "being checked"); when the
link ends while the form is being filled it says the link has expired and whom to
contact, not "open the link again: sending will carry on"."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import Citizen, new_context
from tests.browser.media import jpeg
from tests.fixtures.upload_server import expire_upload_links

pytestmark = pytest.mark.browser


def test_when_every_file_is_refused_the_page_says_nothing_was_received(
    chromium: Browser, citizen: Citizen, tmp_path: Path
) -> None:
    # Renamed non-images: the page cannot tell (the names say .jpg), the server sniffs.
    files = []
    for name in ("holiday.jpg", "beach.jpg"):
        fake = tmp_path / name
        fake.write_bytes(b"<!doctype html><p>not a photo</p>" + b" " * 300_000)
        files.append(str(fake))
    context = new_context(chromium)
    try:
        page = context.new_page()
        page.goto(citizen.link_url)
        page.get_by_label("What do the photos or videos show?").fill("Two photos")
        page.get_by_label("I have read the declaration and I agree with it").check()
        page.get_by_label("Choose photos and videos").set_input_files(files)
        page.get_by_role("button", name="Send files").click()

        heading = page.locator("#progress-heading")
        expect(heading).to_have_text("Nothing was received", timeout=30_000)
        expect(heading).to_be_focused()
        outcome = page.locator("#progress-outcome")
        expect(outcome).to_contain_text("None of your files were sent, so the police do not have them")
        expect(outcome).to_contain_text(citizen.report_reference)
        for i in (0, 1):
            expect(page.locator(f"#file-{i}-state")).to_have_text(
                "Not sent. This is not a photo or video we can accept. Please choose the original photo or video file.")
            expect(page.locator(f"#file-{i}-progress")).to_be_hidden()
        section = page.locator("#progress-section")
        expect(page.locator("#overall-progress")).to_be_hidden()
        for words in ("Keep this page open", "You can pause", "The others were received"):
            assert words not in section.inner_text()
        expect(page.get_by_role("button", name="Pause")).to_be_hidden()
        expect(page.get_by_role("link", name="See your receipt")).to_have_count(0)
        expect(page.get_by_role("link", name="Try again")).to_be_visible()
        expect(page.locator("#live")).to_contain_text("Nothing was received")
    finally:
        context.close()


def test_the_receipt_of_a_submission_without_files_says_nothing_is_being_checked(
    chromium: Browser, citizen: Citizen, tmp_path: Path
) -> None:
    fake = tmp_path / "holiday.jpg"
    fake.write_bytes(b"<!doctype html><p>not a photo</p>" + b" " * 5000)
    context = new_context(chromium)
    try:
        page = context.new_page()
        page.goto(citizen.link_url)
        page.get_by_label("What do the photos or videos show?").fill("A photo")
        page.get_by_label("I have read the declaration and I agree with it").check()
        page.get_by_label("Choose photos and videos").set_input_files(str(fake))
        page.get_by_role("button", name="Send files").click()
        expect(page.locator("#progress-heading")).to_have_text("Nothing was received", timeout=30_000)
        token = page.evaluate(
            "() => Object.entries(localStorage).filter(([k]) => k.startsWith('exhibit.submission.'))"
            ".map(([, v]) => JSON.parse(v).status_token)[0]")
        page.goto(f"{citizen.server.base_url}/u/receipt/{token}")
        main = page.locator("main")
        expect(main).to_contain_text("no files have arrived yet")
        expect(main).to_contain_text("there is nothing being checked")
        assert "checked for viruses" not in main.inner_text()
        page.goto(f"{citizen.server.base_url}/u/status/{token}")
        main = page.locator("main")
        expect(main).to_contain_text("No files have arrived for this receipt yet, so there is nothing being checked")
        assert "You do not need to do anything" not in main.inner_text()
    finally:
        context.close()


def test_a_link_that_expires_while_the_form_is_filled_says_so_and_whom_to_contact(
    chromium: Browser, citizen: Citizen, tmp_path: Path
) -> None:
    link_url, reference = citizen.new_link()
    photo = tmp_path / "car.jpg"
    jpeg(photo, 50_000)
    context = new_context(chromium)
    try:
        page = context.new_page()
        page.goto(link_url)
        page.get_by_label("What do the photos or videos show?").fill("The car")
        page.get_by_label("I have read the declaration and I agree with it").check()
        page.get_by_label("Choose photos and videos").set_input_files(str(photo))
        # The citizen is still typing when the link's time is up: the link ends now on the
        # server (its row) and the page's clock is past the end the page was given. Not a
        # link of a few seconds awaited in real time: on a loaded machine it ran out
        # before the page had even opened.
        ends_ms = page.locator("[data-link-expires-ms]").get_attribute("data-link-expires-ms")
        assert ends_ms
        expire_upload_links(citizen.server.data_dir, reference)
        context.clock.set_fixed_time(int(ends_ms) / 1000 + 1)
        page.get_by_role("button", name="Send files").click()

        summary = page.locator("#error-summary")
        expect(summary).to_be_visible()
        expect(summary).to_contain_text("This link has expired, so nothing more can be sent with it")
        expect(summary).to_contain_text(f"contact the officer dealing with report {reference}")
        expect(summary).to_contain_text("call 101")
        assert "carry on" not in summary.inner_text()
        # Opening the page again says the same, with the reference to quote.
        again = context.new_page()
        again.goto(f"{citizen.server.base_url}/u/")
        expect(again.get_by_role("heading", level=1)).to_have_text("This link has expired")
        expect(again.locator("main")).to_contain_text(reference)
        # Later still the browser has dropped the session cookie too: still the truth.
        context.clear_cookies()
        with page.expect_response(lambda r: r.url.endswith("/u/submission")) as answer:
            page.get_by_role("button", name="Send files").click()
        assert answer.value.status == 401  # no session: the server cannot know which link
        expect(page.locator("#send")).to_be_enabled()  # the page has handled the answer
        expect(summary).to_contain_text("This link has expired, so nothing more can be sent with it")
        expect(summary).to_contain_text(f"contact the officer dealing with report {reference}")
        assert "carry on" not in summary.inner_text()
    finally:
        context.close()
