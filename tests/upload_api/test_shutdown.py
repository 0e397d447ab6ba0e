"""A graceful stop (SIGTERM, a deploy) does not drop what is still in flight: the upload
app's lifespan waits for the progress updates that PATCHes left running in the
background (``ingest.settle``), so the database's record of an unfinished upload is not
older than what the citizen's client was told."""

from __future__ import annotations

import pytest

from storage.models import Upload
from tests.fixtures.upload import UploadEnv, jpeg_bytes
from tests.upload_api.test_hostile import new_upload, patch_headers
from upload_api import ingest

pytestmark = pytest.mark.anyio


async def test_stopping_the_app_writes_the_progress_still_in_flight(upload_env: UploadEnv) -> None:
    app = upload_env.app
    data = jpeg_bytes(5000)
    async with app.router.lifespan_context(app):
        async with upload_env.client() as c:
            url = await new_upload(upload_env, c, len(data))
            r = await c.patch(url, headers=patch_headers(0), content=data[:2000])
            assert r.status_code == 204
        await ingest.settle(app.state.ctx)
        upload_id = url.rsplit("/", 1)[1]
        # One more update is still running when the server is told to stop.
        ingest.save_progress_soon(app.state.ctx, upload_id, 3000, None)
    with upload_env.db.read() as s:
        row = s.get(Upload, upload_id)
        assert row is not None and row.offset == 3000
