"""Hostile clients: SECURITY_CHECKLIST UP rows, BF-05, BF-15, BF-16."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import re
from collections.abc import AsyncIterator

import pytest
from sqlmodel import select

from storage.models import CustodyEvent, EvidenceItem, Job, Upload, UploadLink, UploadState
from storage.uploads import Refused
from tests.fixtures.upload import UploadEnv, jpeg_bytes
from upload_api import ingest, tokens

pytestmark = pytest.mark.anyio


def meta(env: UploadEnv, filename: str = "a.jpg", submission: str | None = None) -> str:
    values = {"filename": filename, "filetype": "image/jpeg", "submission": submission or env.link.submission.id}
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


async def new_upload(env: UploadEnv, c, length: int, **kw: str) -> str:  # type: ignore[no-untyped-def]
    r = await c.post("/u/files/", headers={"Upload-Length": str(length), "Upload-Metadata": meta(env, **kw)})
    assert r.status_code == 201, r.text
    return str(r.headers["location"])


def patch_headers(offset: int) -> dict[str, str]:
    return {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}


async def chunked(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 4096):
        yield data[i : i + 4096]


# -- UP-01 / UP-07 / BF-16: lengths --------------------------------------------------------

async def test_content_length_past_upload_length_is_413_before_reading(upload_env: UploadEnv) -> None:
    async with upload_env.client() as c:
        url = await new_upload(upload_env, c, 1000)
        r = await c.patch(url, headers=patch_headers(0), content=jpeg_bytes(1001))
        assert r.status_code == 413
        assert (await c.head(url)).headers["upload-offset"] == "0"


async def test_chunked_body_past_upload_length_keeps_only_the_declared_bytes(upload_env: UploadEnv) -> None:
    data = jpeg_bytes(10_000)
    async with upload_env.client() as c:
        url = await new_upload(upload_env, c, 10_000)
        r = await c.patch(url, headers=patch_headers(0), content=chunked(data + b"X" * 50_000))
        assert r.status_code == 413
    with upload_env.db.read() as s:
        item = s.exec(select(EvidenceItem)).one()
    assert item.size == 10_000 and item.sha256 == hashlib.sha256(data).hexdigest()


async def test_upload_length_over_max_file_size_or_quota_is_413_and_stores_nothing(upload_env: UploadEnv) -> None:
    small = upload_env.new_link(max_bytes=50_000)
    async with upload_env.client(small) as c:
        for length in (upload_env.settings.max_file_bytes + 1, 50_001):
            r = await c.post("/u/files/", headers={"Upload-Length": str(length),
                                                   "Upload-Metadata": meta(upload_env, submission=small.submission.id)})
            assert r.status_code == 413
        # Reservations count: two 30 kB uploads do not fit in 50 kB.
        r = await c.post("/u/files/", headers={"Upload-Length": "30000",
                                               "Upload-Metadata": meta(upload_env, submission=small.submission.id)})
        assert r.status_code == 201
        r = await c.post("/u/files/", headers={"Upload-Length": "30000",
                                               "Upload-Metadata": meta(upload_env, submission=small.submission.id)})
        assert r.status_code == 413
    with upload_env.db.read() as s:
        assert len(s.exec(select(Upload)).all()) == 1


async def test_file_count_quota_is_enforced(upload_env: UploadEnv) -> None:
    two = upload_env.new_link(max_files=2)
    async with upload_env.client(two) as c:
        codes = []
        for _ in range(3):
            r = await c.post("/u/files/", headers={"Upload-Length": "100",
                                                   "Upload-Metadata": meta(upload_env, submission=two.submission.id)})
            codes.append(r.status_code)
    assert codes == [201, 201, 413]


async def test_zero_byte_upload_is_refused_deterministically(upload_env: UploadEnv) -> None:
    async with upload_env.client() as c:
        r = await c.post("/u/files/", headers={"Upload-Length": "0", "Upload-Metadata": meta(upload_env)})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "ERR_EMPTY_FILE"


async def test_deferred_length_concatenation_and_wrong_version_are_refused(upload_env: UploadEnv) -> None:
    async with upload_env.client() as c:
        r = await c.post("/u/files/", headers={"Upload-Defer-Length": "1", "Upload-Metadata": meta(upload_env)})
        assert r.status_code == 400
        r = await c.post("/u/files/", headers={"Upload-Concat": "final;/u/files/" + "a" * 32,
                                               "Upload-Length": "10", "Upload-Metadata": meta(upload_env)})
        assert r.status_code == 400
        r = await c.post("/u/files/", headers={"Tus-Resumable": "0.2.2", "Upload-Length": "10"})
        assert r.status_code == 412


# -- BF-05: type by magic bytes ------------------------------------------------------------

async def test_renamed_html_is_refused_at_the_first_patch_and_deleted(upload_env: UploadEnv) -> None:
    html = b"<html><body><script>alert(document.cookie)</script>" + b" " * 20_000
    async with upload_env.client() as c:
        url = await new_upload(upload_env, c, len(html), filename="holiday.jpg")
        r = await c.patch(url, headers=patch_headers(0), content=html)
        assert r.status_code == 415
        assert r.json()["error"]["code"] == "ERR_UNSUPPORTED_TYPE"
        assert "photo or video" in r.json()["error"]["message"]
        assert (await c.head(url)).status_code == 404
    with upload_env.db.read() as s:
        up = s.exec(select(Upload)).one()
        assert up.state == UploadState.REFUSED
        assert s.exec(select(EvidenceItem)).all() == []
        link = s.get(UploadLink, upload_env.link.link.id)
        assert link is not None and link.reserved_bytes == 0
    assert not list((upload_env.settings.data_dir.parent / "blobs" / "incoming" / "originals").glob("*"))


async def test_type_is_sniffed_across_small_patches(upload_env: UploadEnv) -> None:
    data = jpeg_bytes(9000)
    async with upload_env.client() as c:
        url = await new_upload(upload_env, c, len(data))
        for start in range(0, len(data), 1000):
            r = await c.patch(url, headers=patch_headers(start), content=data[start : start + 1000])
            assert r.status_code == 204
    with upload_env.db.read() as s:
        assert s.exec(select(EvidenceItem)).one().detected_type == "image/jpeg"


# -- BF-15 / UP-11: names and ids --------------------------------------------------------

@pytest.mark.parametrize(("given", "shown"), [
    ("../../etc/passwd", "passwd"),
    ("/abs/x.jpg", "x.jpg"),
    ("C:\\x\\y.jpg", "y.jpg"),
    ("a\x00.php.jpg", "a.php.jpg"),
    ("evil\r\nSet-Cookie: x=1.jpg", "evilSet-Cookie: x=1.jpg"),
    ("\u202egpj.exe", "gpj.exe"),
    ("\x1b[31mred.jpg", "[31mred.jpg"),
    ("x" * 1000 + ".jpg", "x" * 255),
])
async def test_client_filenames_are_display_data_only(upload_env: UploadEnv, given: str, shown: str) -> None:
    data = jpeg_bytes(2000)
    async with upload_env.client() as c:
        url = await new_upload(upload_env, c, len(data), filename=given)
        assert (await c.patch(url, headers=patch_headers(0), content=data)).status_code == 204
    with upload_env.db.read() as s:
        item = s.exec(select(EvidenceItem)).one()
    assert item.original_filename == shown
    assert re.fullmatch(r"originals/[0-9a-f]{32}", item.blob_key)


@pytest.mark.parametrize("bad", ["..%2F..%2Fetc", "%2e%2e", "a" * 31, "A" * 32, "a" * 32 + "%2F..", "%5c..%5cx"])
async def test_malformed_upload_ids_are_404(upload_env: UploadEnv, bad: str) -> None:
    async with upload_env.client() as c:
        for method in ("HEAD", "PATCH", "DELETE"):
            r = await c.request(method, f"/u/files/{bad}", headers=patch_headers(0))
            assert r.status_code in (404, 405), (method, bad, r.status_code)
            assert "upload-offset" not in r.headers


# -- UP-09: one link's session against another's upload ----------------------------------

async def test_another_links_session_cannot_see_or_touch_an_upload(upload_env: UploadEnv) -> None:
    other = upload_env.new_link()
    data = jpeg_bytes(5000)
    async with upload_env.client() as a, upload_env.client(other) as b:
        url = await new_upload(upload_env, a, len(data))
        await a.patch(url, headers=patch_headers(0), content=data[:2000])
        for method in ("HEAD", "PATCH", "DELETE"):
            r = await b.request(method, url, headers=patch_headers(2000), content=data[2000:] if method == "PATCH" else None)
            assert r.status_code == 404
            assert "upload-offset" not in r.headers
        r = await b.post(url + "/client-sha256", json={"sha256": "0" * 64})
        assert r.status_code == 404
        # Nor name another link's submission.
        r = await b.post("/u/files/", headers={"Upload-Length": "10", "Upload-Metadata": meta(upload_env)})
        assert r.status_code == 404
        assert (await a.head(url)).headers["upload-offset"] == "2000"


# -- UP-12 / UP-17: finished uploads and the finalise race --------------------------------

async def test_patching_a_finished_upload_is_refused(upload_env: UploadEnv) -> None:
    data = jpeg_bytes(3000)
    async with upload_env.client() as c:
        url = await new_upload(upload_env, c, len(data))
        await c.patch(url, headers=patch_headers(0), content=data)
        r = await c.patch(url, headers=patch_headers(3000), content=b"more")
        assert r.status_code == 403
        assert (await c.delete(url)).status_code == 403


async def test_concurrent_completions_make_exactly_one_item_and_one_job(upload_env: UploadEnv) -> None:
    data = jpeg_bytes(4000)
    async with upload_env.client() as c:
        url = await new_upload(upload_env, c, len(data))
    upload_id = url.rsplit("/", 1)[1]
    with upload_env.db.read() as s:
        row = s.get(Upload, upload_id)
    assert row is not None
    blob = await upload_env.store.get(row.blob_key)

    async def body() -> AsyncIterator[bytes]:
        yield data

    await blob.write(0, body())
    ctx = upload_env.app.state.ctx
    results = await asyncio.gather(
        *[ingest.complete(ctx, upload_id, actor="test", request_id=None) for _ in range(10)],
        return_exceptions=True,
    )
    items = {r.id for r in results if isinstance(r, EvidenceItem)}
    assert len(items) == 1, results
    with upload_env.db.read() as s:
        assert len(s.exec(select(EvidenceItem)).all()) == 1
        assert len(s.exec(select(Job)).all()) == 1
        received = s.exec(select(CustodyEvent).where(CustodyEvent.action == "item.received")).all()
        assert len(received) == 1
        link = s.get(UploadLink, upload_env.link.link.id)
        assert link is not None and link.used_files == 1


async def test_a_second_writer_is_locked_out(upload_env: UploadEnv) -> None:
    data = jpeg_bytes(3000)
    async with upload_env.client() as c:
        url = await new_upload(upload_env, c, len(data))
        upload_id = url.rsplit("/", 1)[1]
        async with upload_env.app.state.ctx.locker.hold(upload_id) as mine:
            assert mine
            r = await c.patch(url, headers=patch_headers(0), content=data)
            assert r.status_code == 423
        assert (await c.head(url)).headers["upload-offset"] == "0"


def test_postgresql_advisory_lock_excludes_other_nodes(pg_cluster) -> None:  # type: ignore[no-untyped-def]
    from storage.db import Database

    url = pg_cluster.create_database()
    db = Database(url)
    try:
        _advisory_lock_round(db)
    finally:
        db.dispose()
        pg_cluster.drop_database(url)


def _advisory_lock_round(db) -> None:  # type: ignore[no-untyped-def]
    from storage.locks import AdvisoryLocker

    locker = AdvisoryLocker(db)
    first = locker.try_lock("ab" * 16)
    assert first is not None
    assert locker.try_lock("ab" * 16) is None
    locker.unlock(first, "ab" * 16)
    again = locker.try_lock("ab" * 16)
    assert again is not None
    locker.unlock(again, "ab" * 16)


# -- expiry -------------------------------------------------------------------------------

async def past_its_expiry(env: UploadEnv, url: str) -> str:
    """Let the upload at ``url`` settle, then move its expiry into the past; its id."""
    await ingest.settle(env.app.state.ctx)
    upload_id = url.rsplit("/", 1)[1]
    with env.db.write() as s:
        row = s.get(Upload, upload_id)
        assert row is not None
        row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        s.add(row)
    return upload_id


async def test_expired_unfinished_uploads_are_swept_with_a_custody_event(upload_env: UploadEnv) -> None:
    data = jpeg_bytes(5000)
    async with upload_env.client() as c:
        url = await new_upload(upload_env, c, len(data))
        await c.patch(url, headers=patch_headers(0), content=data[:2000])
        r = await c.head(url)
        assert "upload-expires" in r.headers
    upload_id = await past_its_expiry(upload_env, url)
    assert await ingest.expire_uploads(upload_env.app.state.ctx) == 1
    with upload_env.db.read() as s:
        row = s.get(Upload, upload_id)
        assert row is not None and row.state == UploadState.EXPIRED
        assert s.exec(select(CustodyEvent).where(CustodyEvent.action == "upload.expired")).one()
        link = s.get(UploadLink, upload_env.link.link.id)
        assert link is not None and link.reserved_bytes == 0
    async with upload_env.client() as c:
        assert (await c.head(url)).status_code == 404


# -- UP-19 and headers --------------------------------------------------------------------

async def test_no_cors_for_foreign_origins_and_security_headers_everywhere(upload_env: UploadEnv) -> None:
    async with upload_env.client() as c:
        url = await new_upload(upload_env, c, 100)
        responses = [
            await c.options("/u/files/", headers={"Origin": "https://evil.example",
                                                  "Access-Control-Request-Method": "PATCH"}),
            await c.head(url, headers={"Origin": "https://evil.example"}),
            await c.get("/u/" + "z" * 43),
            await c.get("/healthz"),
            await c.get("/api/v1/openapi.json"),
            await c.get("/u/receipt/nope.json"),
        ]
    for r in responses:
        assert "access-control-allow-origin" not in r.headers
        assert "access-control-allow-credentials" not in r.headers
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert "unsafe-inline" not in r.headers["content-security-policy"]
        assert r.headers["cache-control"] == "no-store"


# -- client hash, receipts ----------------------------------------------------------------

async def test_client_hash_is_recorded_as_match_or_mismatch_and_shown_on_the_receipt(upload_env: UploadEnv) -> None:
    good, bad = jpeg_bytes(3000, 1), jpeg_bytes(3000, 2)
    async with upload_env.client() as c:
        u1 = await new_upload(upload_env, c, 3000)
        await c.patch(u1, headers=patch_headers(0), content=good)
        r = await c.post(u1 + "/client-sha256", json={"sha256": hashlib.sha256(good).hexdigest()})
        assert r.json() == {"match": True, "sha256": hashlib.sha256(good).hexdigest()}
        u2 = await new_upload(upload_env, c, 3000)
        # Sent before the upload completes: compared at completion.
        r = await c.post(u2 + "/client-sha256", json={"sha256": "0" * 64})
        assert r.json() == {"match": None, "sha256": None}
        await c.patch(u2, headers=patch_headers(0), content=bad)
        assert (await c.post(u2 + "/client-sha256", json={"sha256": "nothex"})).status_code == 400
        token = tokens.status_token(upload_env.secret, upload_env.link.submission.id)
        receipt = (await c.get(f"/u/receipt/{token}.json")).json()
        status = (await c.get(f"/u/status/{token}.json")).json()
        forged = token[:-1] + ("A" if token[-1] != "A" else "B")
        assert (await c.get(f"/u/receipt/{forged}.json")).status_code == 404
    assert sorted(f["client_hash_match"] for f in receipt["files"]) == [False, True]
    assert [f["status"] for f in status["files"]] == ["received", "received"]
    with upload_env.db.read() as s:
        results = sorted(e.detail["result"] for e in s.exec(
            select(CustodyEvent).where(CustodyEvent.action == "item.client_hash")).all() if e.detail)
    assert results == ["match", "mismatch"]


async def test_a_quota_refusal_at_completion_is_recorded_not_rolled_back(upload_env: UploadEnv) -> None:
    ctx = upload_env.app.state.ctx
    data = jpeg_bytes(5000)
    row = await ingest.open_upload(ctx, upload_env.link.link.id, submission_id=upload_env.link.submission.id,
                                   length=None, filename="a.jpg", filetype="image/jpeg", actor="test",
                                   request_id=None)
    blob = await upload_env.store.get(row.blob_key)

    async def body() -> AsyncIterator[bytes]:
        yield data

    await blob.write(0, body())
    with upload_env.db.write() as s:  # another upload used the quota meanwhile
        link = s.get(UploadLink, upload_env.link.link.id)
        assert link is not None
        link.used_bytes = link.max_bytes - 100
        s.add(link)
    with pytest.raises(Refused) as refused:
        await ingest.complete(ctx, row.id, actor="test", request_id=None)
    assert refused.value.code == "ERR_QUOTA_BYTES"
    with upload_env.db.read() as s:
        assert s.get(Upload, row.id).state == UploadState.REFUSED  # type: ignore[union-attr]
        assert s.exec(select(CustodyEvent).where(CustodyEvent.action == "upload.refused")).one()
        assert s.exec(select(EvidenceItem)).all() == []
