"""Expiring unfinished uploads is a task of the public app's lifespan (issue 17 item 6):
it runs on the app's own event loop, with the app's own context and locker, and stops
with the app; no thread calls ``asyncio.run`` on objects the server's loop owns."""

from __future__ import annotations

import asyncio
import logging
import threading

import anyio
import pytest
from sqlmodel import select

from storage.models import CustodyEvent, Upload, UploadState
from tests.fixtures.upload import UploadEnv, jpeg_bytes
from tests.upload_api.test_hostile import new_upload, past_its_expiry, patch_headers
from upload_api.app import create_app

pytestmark = pytest.mark.anyio


def _state(env: UploadEnv, upload_id: str) -> str:
    with env.db.read() as s:
        row = s.get(Upload, upload_id)
        assert row is not None
        return row.state


async def test_the_public_apps_lifespan_expires_uploads_on_its_own_loop_and_stops_at_shutdown(
        upload_env: UploadEnv) -> None:
    data = jpeg_bytes(5000)
    async with upload_env.client() as c:
        url = await new_upload(upload_env, c, len(data))
        assert (await c.patch(url, headers=patch_headers(0), content=data[:2000])).status_code == 204
    upload_id = await past_its_expiry(upload_env, url)

    app = create_app(upload_env.settings, upload_env.db, upload_env.store, secret=upload_env.secret,
                     housekeeping_seconds=0.05)
    expired = asyncio.Event()
    on_loop: list[int] = []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "uploads.expired":
                # The round ran on the app's loop: this is that loop's thread.
                on_loop.append(threading.get_ident())
                expired.set()

    handler = Seen()
    logger = logging.getLogger("upload_api.ingest")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        async with app.router.lifespan_context(app):
            task = app.state.housekeeping
            assert isinstance(task, asyncio.Task) and task.get_loop() is asyncio.get_running_loop()
            with anyio.fail_after(20):  # bounded: a task that never runs fails, not hangs
                await expired.wait()
            assert _state(upload_env, upload_id) == UploadState.EXPIRED
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert on_loop == [threading.get_ident()]  # the test's loop thread: no other thread or loop
    assert task.done() and task.cancelled()  # stopped with the app, not left behind
    with upload_env.db.read() as s:
        assert s.exec(select(CustodyEvent).where(CustodyEvent.action == "upload.expired")).one()
    async with upload_env.client() as c:
        assert (await c.head(url)).status_code == 404


async def test_without_an_interval_the_app_starts_no_background_task(upload_env: UploadEnv) -> None:
    app = upload_env.app
    async with app.router.lifespan_context(app):
        assert app.state.housekeeping is None
