"""What completing an upload asks of the database's one writer (issue 16 item 3).

On SQLite every write transaction queues behind the others and commits with an fsync; in a
surge of citizens the uploads complete by the hundred. The last PATCH used to write the
final offset in a transaction of its own just before completion wrote it again. The
recorded facts stay the same: the evidence, its type, the upload's final offset (and, for a
completion refused, the offset in its custody event: tests/upload_api/test_link_rechecks.py).
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import select

from storage.models import EvidenceItem, Upload, UploadState
from tests.fixtures.upload import UploadEnv, jpeg_bytes
from tests.upload_api.test_tus import create, patch_headers

pytestmark = pytest.mark.anyio


class WriteCount:
    """Write transactions begun on the database (SQLite: BEGIN IMMEDIATE) while counting."""

    def __init__(self, env: UploadEnv) -> None:
        self.engine = env.db.engine
        self.count = 0

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.strip().upper() == "BEGIN IMMEDIATE":
            self.count += 1

    def __enter__(self) -> WriteCount:
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


async def test_the_last_patch_completes_with_two_write_transactions(upload_env: UploadEnv) -> None:
    assert upload_env.db.is_sqlite
    data = jpeg_bytes(200_000)
    async with upload_env.client() as c:
        r = await create(upload_env, c, len(data))
        assert r.status_code == 201, r.text
        with WriteCount(upload_env) as writes:
            r = await c.patch(r.headers["location"], headers=patch_headers(0), content=data)
        assert r.status_code == 204, r.text
        assert r.headers["upload-offset"] == str(len(data))
    # The re-check of the link under its lock, then the evidence: nothing else.
    assert writes.count == 2
    with upload_env.db.read() as s:
        item = s.exec(select(EvidenceItem)).one()
        up = s.exec(select(Upload)).one()
    assert item.sha256 == hashlib.sha256(data).hexdigest()
    assert item.detected_type == "image/jpeg"
    assert (up.state, up.offset, up.detected_type) == (UploadState.COMPLETE, len(data), "image/jpeg")

