"""The database going away in the middle of a citizen's upload (PostgreSQL restarting, a
fail-over; on SQLite, the write lock held too long in a surge): each door answers 503 with
Retry-After, which resumable clients retry, not a 500; once the database is back the
upload carries on from the bytes already acknowledged and ends with the right hash."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import select

from storage.db import Database
from storage.models import EvidenceItem
from tests.fixtures.upload import UploadEnv, jpeg_bytes
from tests.upload_api.test_tus import create, patch_headers

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)]


@contextmanager
def database_refusing_connections(db: Database) -> Iterator[None]:
    """No new connection to ``db``'s database, and every open one ended, as while
    PostgreSQL restarts or fails over; restored afterwards."""
    url = make_url(db.url)
    admin = create_engine(url.set(database="postgres").render_as_string(hide_password=False),
                          isolation_level="AUTOCOMMIT")
    name = url.database
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                         {"n": name})
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


async def test_an_upload_survives_the_database_going_away(upload_env: UploadEnv) -> None:
    data = jpeg_bytes(400_000)
    async with upload_env.client() as c:
        r = await create(upload_env, c, len(data))
        assert r.status_code == 201, r.text
        url = r.headers["location"]
        r = await c.patch(url, headers=patch_headers(0), content=data[:150_000])
        assert r.status_code == 204 and r.headers["upload-offset"] == "150000"

        with database_refusing_connections(upload_env.db):
            for r in (await c.head(url), await c.patch(url, headers=patch_headers(150_000), content=data[150_000:])):
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "5" and r.headers["tus-resumable"] == "1.0.0"
            error = r.json()["error"]  # the PATCH's (a HEAD has no body)
            assert error["code"] == "ERR_BUSY"
            assert "Nothing you have already sent is lost" in error["what_to_do"]
            assert "psycopg" not in r.text and "connection" not in r.text.lower()  # VL-09
            # A citizen opening their link meanwhile gets the same plain answer.
            opened = await c.get(f"/u/{upload_env.link.token}")
            assert opened.status_code == 503 and opened.headers["retry-after"] == "5"

        # The database is back: the upload resumes from what was acknowledged.
        r = await c.head(url)
        assert r.status_code == 200 and r.headers["upload-offset"] == "150000"
        r = await c.patch(url, headers=patch_headers(150_000), content=data[150_000:])
        assert r.status_code == 204, r.text
    with upload_env.db.read() as s:
        item = s.exec(select(EvidenceItem)).one()
    assert item.sha256 == hashlib.sha256(data).hexdigest() and item.size == len(data)
