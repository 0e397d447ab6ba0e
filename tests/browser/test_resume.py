"""tus-js-client in real Chromium survives what phones live through: the server killed
mid-upload (kill -9) and restarted, and the tab closed and the link opened again. Each
time the same upload carries on (one upload row, never a second one), and the receipt's
SHA-256 is the file's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, CDPSession, Page, expect
from sqlmodel import select

from storage.db import Database
from storage.models import EvidenceItem, Submission, Upload, UploadState
from tests.browser.conftest import Citizen, new_context
from tests.browser.media import mp4
from tests.fixtures.upload_server import UploadServer, make_upload_link
from upload_api.pages import CHUNK_BYTES

pytestmark = pytest.mark.browser

RECEIPT = re.compile(r"/u/receipt/[0-9a-f]{32}-[A-Za-z0-9_-]{22}$")


def throttle(page: Page, bytes_per_second: float) -> CDPSession:
    """Slow the page's uploads (Chromium's own network throttling), so that "mid-upload"
    lasts long enough to act in; -1 lifts it."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": bytes_per_second})
    return cdp


def start_sending(page: Page, link_url: str, path: Path) -> None:
    page.goto(link_url)
    page.get_by_label("What do the photos or videos show?").fill("Dashcam: the lorry pulling out")
    page.get_by_label("Choose photos and videos").set_input_files(str(path))
    page.get_by_label("I have read the declaration and I agree with it").check()
    page.get_by_role("button", name="Send files").click()
    expect(page.locator("#progress-heading")).to_be_focused()


def wait_for_acknowledged_bytes(page: Page, at_least: int) -> None:
    """Until the server has acknowledged (made durable) at least ``at_least`` bytes of the
    first file: tus-js-client's onChunkComplete writes it into the page."""
    page.wait_for_function(
        "(n) => Number(document.querySelector('#file-0-progress')?.dataset.ackedBytes || 0) >= n",
        arg=at_least, timeout=60_000,
    )


def receipt_facts(page: Page) -> tuple[str, str]:
    page.wait_for_url(RECEIPT, timeout=180_000)
    item = page.locator("#receipt-files > li")
    expect(item).to_have_count(1)
    sha = item.locator(".hash").get_attribute("data-sha256")
    match = item.locator(".client-check").get_attribute("data-match")
    assert sha is not None and match is not None
    return sha, match


def uploads_of(db: Database, link_url: str) -> tuple[list[Upload], list[Submission], list[EvidenceItem]]:
    with db.read() as s:
        uploads = list(s.exec(select(Upload)).all())
        subs = list(s.exec(select(Submission)).all())
        items = list(s.exec(select(EvidenceItem)).all())
    return uploads, subs, items


def test_upload_survives_kill_9_of_the_server_and_the_receipt_hash_matches_the_file(
    chromium: Browser, tmp_path: Path
) -> None:
    server = UploadServer(data_dir=tmp_path / "data")
    server.data_dir.mkdir()
    server.start()
    context = new_context(chromium)
    db = Database(server.settings.database_url)
    try:
        link_url, _ = make_upload_link(server.data_dir, base_url=server.base_url)
        video = tmp_path / "dashcam.mp4"
        expected = mp4(video, 50 * 1000 * 1000)
        page = context.new_page()
        cdp = throttle(page, 4 * 1024 * 1024)
        start_sending(page, link_url, video)

        wait_for_acknowledged_bytes(page, CHUNK_BYTES)
        [before], _, _ = uploads_of(db, link_url)
        assert before.state == UploadState.OPEN and before.length == video.stat().st_size
        # The server's durable offset (HEAD asks the store; the row is updated lazily),
        # with the page's own upload session.
        head = page.context.request.head(f"{server.base_url}/u/files/{before.id}", headers={"Tus-Resumable": "1.0.0"})
        assert head.status == 200
        assert CHUNK_BYTES <= int(head.headers["upload-offset"]) < before.length

        server.kill()
        server.start()  # same port, same data directory
        cdp.send("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})

        sha, match = receipt_facts(page)
        assert sha == expected
        assert match == "yes"
        uploads, subs, items = uploads_of(db, link_url)
        # The same upload carried on: tus-js-client asked for the offset and resumed,
        # it did not start a second upload.
        assert [u.id for u in uploads] == [before.id]
        assert uploads[0].state == UploadState.COMPLETE
        assert len(subs) == 1 and len(items) == 1
        assert items[0].sha256 == expected and items[0].client_hash_match is True
    finally:
        context.close()
        db.dispose()
        server.stop()


def test_closing_the_tab_and_opening_the_link_again_continues_the_same_submission_and_upload(
    chromium: Browser, citizen: Citizen, tmp_path: Path
) -> None:
    link_url, _ = citizen.new_link()
    video = tmp_path / "phone.mp4"
    expected = mp4(video, 24 * 1000 * 1000, seed=7)
    context = new_context(chromium)
    db = Database(citizen.server.settings.database_url)
    try:
        page = context.new_page()
        throttle(page, 4 * 1024 * 1024)
        start_sending(page, link_url, video)
        wait_for_acknowledged_bytes(page, CHUNK_BYTES)
        reference = page.evaluate(
            "() => Object.entries(localStorage).filter(([k]) => k.startsWith('exhibit.submission.'))"
            ".map(([, v]) => JSON.parse(v).reference)[0]")
        page.close()

        page = context.new_page()  # same browser profile: its localStorage survives
        page.goto(link_url)
        notice = page.locator("#resume-notice")
        expect(notice).to_be_visible()
        expect(notice).to_contain_text(reference)
        # The statement was sent already; only the files are asked for again.
        expect(page.get_by_label("What do the photos or videos show?")).to_be_hidden()
        page.get_by_label("Choose photos and videos").set_input_files(str(video))
        page.get_by_role("button", name="Continue sending").click()

        sha, match = receipt_facts(page)
        assert sha == expected and match == "yes"
        expect(page.locator("#receipt-reference")).to_have_text(reference)
        with db.read() as s:
            subs = s.exec(select(Submission).where(Submission.reference == reference)).all()
            assert len(subs) == 1
            uploads = s.exec(select(Upload).where(Upload.submission_id == subs[0].id)).all()
        assert len(uploads) == 1 and uploads[0].state == UploadState.COMPLETE
        # Done: the page forgets the submission, so the next visit starts afresh.
        assert page.evaluate("() => Object.keys(localStorage).filter(k => k.startsWith('exhibit.')).length") == 0
    finally:
        context.close()
        db.dispose()


def test_a_phone_that_goes_offline_mid_upload_carries_on_when_it_is_back_online(
    chromium: Browser, citizen: Citizen, tmp_path: Path
) -> None:
    link_url, _ = citizen.new_link()
    video = tmp_path / "train.mp4"
    expected = mp4(video, 20 * 1000 * 1000, seed=11)
    context = new_context(chromium)
    try:
        page = context.new_page()
        cdp = throttle(page, 4 * 1024 * 1024)
        start_sending(page, link_url, video)
        wait_for_acknowledged_bytes(page, CHUNK_BYTES)
        cdp.send("Network.emulateNetworkConditions", {
            "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        # tus-js-client does not retry while the browser says it is offline; the page
        # says what is happening and waits for the `online` event.
        expect(page.locator("#file-0-state")).to_have_text(
            "Waiting for a connection. Sending will carry on by itself.", timeout=30_000)
        expect(page.locator("#live")).to_contain_text("Connection lost")
        cdp.send("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        sha, match = receipt_facts(page)
        assert (sha, match) == (expected, "yes")
    finally:
        context.close()
