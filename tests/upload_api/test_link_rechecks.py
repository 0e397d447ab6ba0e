"""The link is the citizen's only authority, and it is checked where it matters: before a
PATCH may even ask for the upload's lock, and again, under a row lock, when an upload is
about to become evidence (the link may be revoked or expire while the bytes stream in).
On SQLite and PostgreSQL, through the real tus and multipart handlers."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import AsyncIterator

import anyio
import httpx2
import pytest
from sqlmodel import select

from storage import links
from storage.blobs.protocol import BlobNotFound
from storage.models import CustodyEvent, EvidenceItem, Upload, UploadLink, UploadState
from tests.fixtures.upload import UploadEnv, jpeg_bytes

pytestmark = pytest.mark.anyio


def meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def patch_headers(offset: int) -> dict[str, str]:
    return {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}


async def new_upload(env: UploadEnv, client: httpx2.AsyncClient, length: int) -> str:
    r = await client.post("/u/files/", headers={
        "Upload-Length": str(length),
        "Upload-Metadata": meta(filename="photo.jpg", filetype="image/jpeg", submission=env.link.submission.id)})
    assert r.status_code == 201, r.text
    return str(r.headers["location"])


def paused_body(first: bytes, rest: bytes, reached: anyio.Event, go_on: anyio.Event) -> AsyncIterator[bytes]:
    """A request body that stops after ``first``. The in-process transport pulls a body
    chunk only when the app reads it, so ``reached`` is set once the server has
    authorised the request and is storing its bytes (holding the upload's lock)."""

    async def gen() -> AsyncIterator[bytes]:
        yield first
        reached.set()
        await go_on.wait()
        yield rest

    return gen()


def anonymous(env: UploadEnv) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=env.app), base_url="http://testserver",
                              headers={"Tus-Resumable": "1.0.0"})


# -- the lock comes after authorisation ---------------------------------------------------


async def test_a_patch_without_credentials_gets_401_even_while_the_upload_is_being_written(
    upload_env: UploadEnv,
) -> None:
    data = jpeg_bytes(200_000)
    stranger_link = upload_env.new_link()
    reached, go_on = anyio.Event(), anyio.Event()
    outcome: dict[str, httpx2.Response] = {}
    async with upload_env.client() as owner:
        url = await new_upload(upload_env, owner, len(data))

        async def owners_patch() -> None:
            outcome["owner"] = await owner.patch(
                url, headers=patch_headers(0), content=paused_body(data[:100_000], data[100_000:], reached, go_on))

        async with anyio.create_task_group() as tg:
            tg.start_soon(owners_patch)
            await reached.wait()  # the owner's PATCH holds the upload's lock now
            async with anonymous(upload_env) as anon:
                r = await anon.patch(url, headers=patch_headers(0), content=b"x" * 10)
            assert r.status_code == 401, r.text
            assert r.json()["error"]["code"] == "ERR_NO_SESSION"
            # Another citizen's link: the upload does not exist for them (not "locked").
            async with upload_env.client(stranger_link) as stranger:
                r = await stranger.patch(url, headers=patch_headers(0), content=b"x" * 10)
            assert r.status_code == 404, r.text
            assert r.json()["error"]["code"] == "ERR_UPLOAD_NOT_FOUND"
            # The link's own second writer is the one that is told to wait.
            r = await owner.patch(url, headers=patch_headers(0), content=b"x" * 10)
            assert r.status_code == 423, r.text
            go_on.set()
    assert outcome["owner"].status_code == 204, outcome["owner"].text
    assert outcome["owner"].headers["upload-offset"] == str(len(data))


# -- the link ends while the bytes stream in ----------------------------------------------


def end_link(env: UploadEnv, link_id: str, how: str) -> None:
    """The officer withdraws the link, or its time runs out (the database clock passes
    ``expires_at``: the same as waiting, without the wait)."""
    with env.db.write() as s:
        if how == "revoked":
            links.revoke_link(env.db, s, link_id, actor="user:officer")
        else:
            link = s.get(UploadLink, link_id)
            assert link is not None
            link.expires_at = env.db.now(s) - dt.timedelta(seconds=1)
            s.add(link)


async def assert_not_evidence(env: UploadEnv, response: httpx2.Response, how: str) -> None:
    code = "ERR_LINK_REVOKED" if how == "revoked" else "ERR_LINK_EXPIRED"
    assert response.status_code == 410, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert "not kept" in error["message"] and error["what_to_do"]  # the citizen is told
    with env.db.read() as s:
        assert s.exec(select(EvidenceItem)).all() == []
        (up,) = s.exec(select(Upload).where(Upload.link_id == env.link.link.id)).all()
        assert up.state == UploadState.REFUSED
        refused = s.exec(select(CustodyEvent).where(CustodyEvent.action == "upload.refused")).all()
        assert [e.detail["reason"] for e in refused] == [code]
        link = s.get(UploadLink, env.link.link.id)
        assert link is not None and link.used_files == 0 and link.reserved_bytes == 0
        blob_key = up.blob_key
    with pytest.raises(BlobNotFound):  # the refused bytes are gone from the store
        await env.store.get(blob_key)


@pytest.mark.parametrize("how", ["revoked", "expired"])
async def test_a_tus_upload_whose_link_ends_mid_patch_does_not_become_evidence(
    upload_env: UploadEnv, how: str
) -> None:
    data = jpeg_bytes(300_000)
    reached, go_on = anyio.Event(), anyio.Event()
    async with upload_env.client() as c:
        url = await new_upload(upload_env, c, len(data))

        async def officer() -> None:
            await reached.wait()  # the PATCH is authorised and storing bytes
            await anyio.to_thread.run_sync(end_link, upload_env, upload_env.link.link.id, how)
            go_on.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(officer)
            r = await c.patch(url, headers=patch_headers(0),
                              content=paused_body(data[:100_000], data[100_000:], reached, go_on))
    await assert_not_evidence(upload_env, r, how)


def multipart_parts(boundary: str, data: bytes) -> tuple[bytes, bytes]:
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"declaration\"\r\n\r\naccepted\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"photo.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode()
    return head + data[:100_000], data[100_000:] + f"\r\n--{boundary}--\r\n".encode()


@pytest.mark.parametrize("how", ["revoked", "expired"])
async def test_a_multipart_upload_whose_link_ends_mid_body_does_not_become_evidence(
    upload_env: UploadEnv, how: str
) -> None:
    data = jpeg_bytes(300_000)
    boundary = "exhibit-test-boundary"
    first, rest = multipart_parts(boundary, data)
    reached, go_on = anyio.Event(), anyio.Event()
    async with upload_env.client() as c:

        async def officer() -> None:
            await reached.wait()
            await anyio.to_thread.run_sync(end_link, upload_env, upload_env.link.link.id, how)
            go_on.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(officer)
            r = await c.post("/u/submit", headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                             content=paused_body(first, rest, reached, go_on))
    await assert_not_evidence(upload_env, r, how)
