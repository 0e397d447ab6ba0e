"""tus 1.0.0 at /u/files/: the protocol a resumable client sees, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib

import pytest
from sqlmodel import select

from storage.models import EvidenceItem, Job, Upload, UploadLink, UploadState
from tests.fixtures.upload import UploadEnv, jpeg_bytes

pytestmark = pytest.mark.anyio


def meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


async def create(env: UploadEnv, client, length: int, *, filename: str = "photo.jpg", body: bytes | None = None):
    headers = {"Upload-Length": str(length),
               "Upload-Metadata": meta(filename=filename, filetype="image/jpeg", submission=env.link.submission.id)}
    if body is not None:
        headers["Content-Type"] = "application/offset+octet-stream"
    return await client.post("/u/files/", headers=headers, content=body)


def patch_headers(offset: int) -> dict[str, str]:
    return {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}


async def test_options_advertises_version_extensions_and_max_size(upload_env: UploadEnv) -> None:
    async with upload_env.client() as c:
        r = await c.options("/u/files/")
    assert r.status_code == 204
    assert r.headers["tus-version"] == "1.0.0"
    assert set(r.headers["tus-extension"].split(",")) == {
        "creation", "creation-with-upload", "termination", "checksum", "expiration"}
    assert int(r.headers["tus-max-size"]) == upload_env.settings.max_file_bytes
    assert "access-control-allow-origin" not in r.headers


async def test_upload_in_two_patches_becomes_one_evidence_item_with_its_hash(upload_env: UploadEnv) -> None:
    data = jpeg_bytes(300_000)
    async with upload_env.client() as c:
        r = await create(upload_env, c, len(data))
        assert r.status_code == 201, r.text
        url = r.headers["location"]
        assert "upload-expires" in r.headers
        r = await c.patch(url, headers=patch_headers(0), content=data[:100_000])
        assert r.status_code == 204, r.text
        assert r.headers["upload-offset"] == "100000"
        r = await c.head(url)
        assert r.headers["upload-offset"] == "100000"
        assert r.headers["upload-length"] == str(len(data))
        r = await c.patch(url, headers=patch_headers(100_000), content=data[100_000:])
        assert r.status_code == 204, r.text
        assert r.headers["upload-offset"] == str(len(data))
    with upload_env.db.read() as s:
        item = s.exec(select(EvidenceItem)).one()
        link = s.get(UploadLink, upload_env.link.link.id)
        jobs = s.exec(select(Job).where(Job.item_id == item.id)).all()
        up = s.exec(select(Upload)).one()
    assert item.sha256 == hashlib.sha256(data).hexdigest()
    assert item.size == len(data)
    assert item.detected_type == "image/jpeg"
    assert item.state == "received"
    assert len(jobs) == 1
    assert up.state == UploadState.COMPLETE
    assert link is not None and link.used_files == 1 and link.used_bytes == len(data) and link.reserved_bytes == 0
    assert await upload_env.store.size(item.blob_key) == len(data)


async def test_creation_with_upload_stores_the_body_at_once(upload_env: UploadEnv) -> None:
    data = jpeg_bytes(50_000)
    async with upload_env.client() as c:
        r = await create(upload_env, c, len(data), body=data)
        assert r.status_code == 201, r.text
        assert r.headers["upload-offset"] == str(len(data))
    with upload_env.db.read() as s:
        assert s.exec(select(EvidenceItem)).one().sha256 == hashlib.sha256(data).hexdigest()


async def test_patch_at_the_wrong_offset_is_409_and_writes_nothing(upload_env: UploadEnv) -> None:
    data = jpeg_bytes(10_000)
    async with upload_env.client() as c:
        url = (await create(upload_env, c, len(data))).headers["location"]
        await c.patch(url, headers=patch_headers(0), content=data[:4000])
        for bad in (0, 3999, 4001, 10_000_000):
            r = await c.patch(url, headers=patch_headers(bad), content=data[4000:])
            assert r.status_code == 409
        r = await c.patch(url, headers=patch_headers(-1), content=data[4000:])
        assert r.status_code == 400
        assert (await c.head(url)).headers["upload-offset"] == "4000"


async def test_patch_with_wrong_content_type_is_415(upload_env: UploadEnv) -> None:
    async with upload_env.client() as c:
        url = (await create(upload_env, c, 100)).headers["location"]
        r = await c.patch(url, headers={"Upload-Offset": "0", "Content-Type": "application/octet-stream"},
                          content=jpeg_bytes(100))
        assert r.status_code == 415
        assert (await c.head(url)).headers["upload-offset"] == "0"


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
async def test_checksum_mismatch_is_460_and_the_offset_stays(upload_env: UploadEnv, algorithm: str) -> None:
    data = jpeg_bytes(20_000)
    fn = getattr(hashlib, algorithm)
    async with upload_env.client() as c:
        url = (await create(upload_env, c, len(data))).headers["location"]
        wrong = base64.b64encode(fn(b"other").digest()).decode()
        r = await c.patch(url, headers={**patch_headers(0), "Upload-Checksum": f"{algorithm} {wrong}"}, content=data)
        assert r.status_code == 460
        assert (await c.head(url)).headers["upload-offset"] == "0"
        right = base64.b64encode(fn(data).digest()).decode()
        r = await c.patch(url, headers={**patch_headers(0), "Upload-Checksum": f"{algorithm} {right}"}, content=data)
        assert r.status_code == 204
        assert r.headers["upload-offset"] == str(len(data))


async def test_unsupported_checksum_algorithm_is_400(upload_env: UploadEnv) -> None:
    async with upload_env.client() as c:
        url = (await create(upload_env, c, 100)).headers["location"]
        r = await c.patch(url, headers={**patch_headers(0), "Upload-Checksum": "md5 AAAA"}, content=jpeg_bytes(100))
        assert r.status_code == 400


async def test_delete_removes_an_unfinished_upload_and_refuses_a_finished_one(upload_env: UploadEnv) -> None:
    data = jpeg_bytes(5000)
    async with upload_env.client() as c:
        url = (await create(upload_env, c, len(data))).headers["location"]
        await c.patch(url, headers=patch_headers(0), content=data[:1000])
        assert (await c.delete(url)).status_code == 204
        assert (await c.head(url)).status_code == 404
        done = (await create(upload_env, c, len(data), body=data)).headers["location"]
        assert (await c.delete(done)).status_code == 403
    with upload_env.db.read() as s:
        link = s.get(UploadLink, upload_env.link.link.id)
        assert link is not None and link.reserved_bytes == 0 and link.used_files == 1
