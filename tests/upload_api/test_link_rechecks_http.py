"""The link ends while a file is arriving, over real HTTP (uvicorn on 127.0.0.1): a raw
tus PATCH and a raw multipart form, each sent in two halves with the officer's action in
between. Completion refuses the file; nothing becomes evidence; the bytes are deleted."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import httpx2
import pytest
from sqlmodel import select

from storage.models import Upload, UploadState
from tests.fixtures.upload import LiveServer, UploadEnv, jpeg_bytes
from tests.upload_api.test_link_rechecks import end_link, multipart_parts
from tests.upload_api.test_tus_clients import wait_until


def _answer(sock: socket.socket) -> tuple[int, dict[str, str]]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        body += sock.recv(65536)
    return int(lines[0].split()[1]), json.loads(body) if body else {}


def _stored_files(env: UploadEnv) -> list[str]:
    root = env.settings.storage_url.removeprefix("file://")
    return [str(p) for p in Path(root).rglob("*") if p.is_file()]


def _open_uploads(env: UploadEnv) -> list[Upload]:
    with env.db.read() as s:
        return list(s.exec(select(Upload).where(Upload.state == UploadState.OPEN)).all())


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_a_real_tus_patch_whose_link_ends_midway_is_refused(upload_env: UploadEnv, how: str) -> None:
    data = jpeg_bytes(400_000)
    token = upload_env.link.token
    auth = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    meta = "submission " + base64.b64encode(upload_env.link.submission.id.encode()).decode()
    with LiveServer(upload_env.app) as server:
        r = httpx2.post(f"{server.url}/u/files/", headers={**auth, "Upload-Length": str(len(data)),
                                                            "Upload-Metadata": meta})
        path = r.headers["location"]
        upload_id = path.rsplit("/", 1)[1]
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(
                f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Upload-Offset: 0\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data[:150_000]
            )
            # The lock is taken only after authorisation: held means authorised and writing.
            wait_until(lambda: upload_env.app.state.ctx.locker.held_here(upload_id))
            end_link(upload_env, upload_env.link.link.id, how)
            sock.sendall(data[150_000:])
            status, body = _answer(sock)
    assert status == 410, body
    assert body["error"]["code"] == ("ERR_LINK_REVOKED" if how == "revoked" else "ERR_LINK_EXPIRED")
    with upload_env.db.read() as s:
        up = s.get(Upload, upload_id)
        assert up is not None and up.state == UploadState.REFUSED
    assert _stored_files(upload_env) == []  # the refused bytes are deleted


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_a_real_multipart_post_whose_link_ends_midway_is_refused(upload_env: UploadEnv, how: str) -> None:
    boundary = "exhibit-http-boundary"
    first, rest = multipart_parts(boundary, jpeg_bytes(400_000))
    token = upload_env.link.token
    with LiveServer(upload_env.app) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(
                f"POST /u/submit HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {len(first) + len(rest)}\r\n\r\n".encode() + first
            )
            wait_until(lambda: len(_open_uploads(upload_env)) == 1)  # the file part is streaming
            end_link(upload_env, upload_env.link.link.id, how)
            sock.sendall(rest)
            status, body = _answer(sock)
    assert status == 410, body
    assert body["error"]["code"] == ("ERR_LINK_REVOKED" if how == "revoked" else "ERR_LINK_EXPIRED")
    with upload_env.db.read() as s:
        (up,) = s.exec(select(Upload)).all()
        assert up.state == UploadState.REFUSED
    assert _stored_files(upload_env) == []
