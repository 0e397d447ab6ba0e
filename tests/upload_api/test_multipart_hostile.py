"""Hostile multipart bodies (UP-01, UP-02, UP-03) and size boundaries (BF-16)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import select

from storage.db import Database
from storage.models import EvidenceItem, Upload, UploadState
from tests.fixtures.upload import UploadEnv, jpeg_bytes, make_env

pytestmark = pytest.mark.anyio

BOUNDARY = "xYzZY"


def form(file: bytes, *, boundary: str = BOUNDARY, before: bytes = b"", after: bytes = b"") -> bytes:
    return (
        before
        + f'--{boundary}\r\nContent-Disposition: form-data; name="declaration"\r\n\r\naccepted\r\n'.encode()
        + f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n'
          f"Content-Type: image/jpeg\r\n\r\n".encode()
        + file + f"\r\n--{boundary}--\r\n".encode() + after
    )


def ctype(boundary: str = BOUNDARY) -> dict[str, str]:
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}


async def chunked(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 65536):
        yield data[i : i + 65536]


@pytest.fixture
def small_env(db: Database, tmp_path: Path) -> UploadEnv:
    return make_env(db, tmp_path, max_file_bytes=20_000)


async def test_a_chunked_body_over_the_file_limit_is_413_with_no_content_length(small_env: UploadEnv) -> None:
    async with small_env.client() as c:
        r = await c.post("/u/submit", content=chunked(form(jpeg_bytes(200_000))), headers=ctype())
    assert r.status_code == 413
    with small_env.db.read() as s:
        assert s.exec(select(EvidenceItem)).all() == []
        assert all(u.state == UploadState.REFUSED for u in s.exec(select(Upload)).all())


async def test_exactly_the_limit_is_accepted_and_one_byte_more_is_not(small_env: UploadEnv) -> None:
    async with small_env.client() as c:
        assert (await c.post("/u/submit", content=form(jpeg_bytes(20_000)), headers=ctype())).status_code == 201
        assert (await c.post("/u/submit", content=form(jpeg_bytes(20_001)), headers=ctype())).status_code == 413
        meta = "submission " + base64.b64encode(small_env.link.submission.id.encode()).decode()
        ok = await c.post("/u/files/", headers={"Upload-Length": "20000", "Upload-Metadata": meta})
        over = await c.post("/u/files/", headers={"Upload-Length": "20001", "Upload-Metadata": meta})
    assert (ok.status_code, over.status_code) == (201, 413)


async def test_junk_after_the_closing_boundary_is_not_read(upload_env: UploadEnv) -> None:
    async with upload_env.client() as c:
        r = await c.post("/u/submit", content=form(jpeg_bytes(3000), after=b"-" * (5 << 20)), headers=ctype())
    assert r.status_code == 201


async def test_crlf_flood_before_the_first_boundary_is_harmless(upload_env: UploadEnv) -> None:
    async with upload_env.client() as c:
        r = await c.post("/u/submit", content=form(jpeg_bytes(3000), before=b"\r\n" * (1 << 20)), headers=ctype())
    assert r.status_code in (201, 400)


async def test_a_huge_boundary_is_refused(upload_env: UploadEnv) -> None:
    big = "b" * 16_384
    async with upload_env.client() as c:
        r = await c.post("/u/submit", content=form(jpeg_bytes(3000), boundary=big), headers=ctype(big))
    assert r.status_code == 400


async def test_a_huge_part_header_is_refused(upload_env: UploadEnv) -> None:
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"description\"\r\nX-Pad: {'p' * (1 << 20)}\r\n\r\n"
            f"x\r\n--{BOUNDARY}--\r\n").encode()
    async with upload_env.client() as c:
        r = await c.post("/u/submit", content=body, headers=ctype())
    assert r.status_code == 400


async def test_a_huge_text_field_is_refused(upload_env: UploadEnv) -> None:
    async with upload_env.client() as c:
        r = await c.post("/u/submit", data={"description": "x" * (1 << 20), "declaration": "accepted"},
                         files=[("files", ("a.jpg", jpeg_bytes(100), "image/jpeg"))])
    assert r.status_code == 413


async def test_a_truncated_form_stores_nothing(upload_env: UploadEnv) -> None:
    body = form(jpeg_bytes(50_000))[:-3000]
    async with upload_env.client() as c:
        r = await c.post("/u/submit", content=body, headers=ctype())
    assert r.status_code == 400
    with upload_env.db.read() as s:
        assert s.exec(select(EvidenceItem)).all() == []
