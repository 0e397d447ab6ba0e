"""Real tus clients against a real server (uvicorn on 127.0.0.1): tuspy with checksums,
and an upload interrupted mid-PATCH then resumed by a new client talking to a new app
instance that has never seen the upload (its hash state is rebuilt, not remembered)."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
from collections.abc import Callable

from sqlmodel import select
from tusclient import client as tus

from storage.models import EvidenceItem
from tests.fixtures.upload import LiveServer, UploadEnv, jpeg_bytes
from upload_api.app import create_app


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    done = threading.Event()
    deadline = 0.0
    while not condition():
        deadline += 0.01
        if deadline > timeout:
            raise AssertionError("condition not reached")
        done.wait(0.01)


def test_tuspy_uploads_in_checksummed_chunks(upload_env: UploadEnv, live_server: LiveServer) -> None:
    data = jpeg_bytes(1_500_000, 7)
    c = tus.TusClient(f"{live_server.url}/u/files/", headers={"Authorization": f"Bearer {upload_env.link.token}"})
    uploader = c.uploader(file_stream=io.BytesIO(data), chunk_size=256 << 10, upload_checksum=True,
                          metadata={"filename": "car.jpg", "filetype": "image/jpeg",
                                    "submission": upload_env.link.submission.id})
    uploader.upload()
    with upload_env.db.read() as s:
        item = s.exec(select(EvidenceItem)).one()
    assert item.sha256 == hashlib.sha256(data).hexdigest()
    assert item.original_filename == "car.jpg"


def _cut_patch(port: int, path: str, token: str, offset: int, body: bytes, declared: int) -> None:
    """A PATCH whose connection drops after ``body`` of ``declared`` bytes."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(
            f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Upload-Offset: {offset}\r\nContent-Length: {declared}\r\n\r\n".encode() + body
        )


def test_interrupted_upload_resumes_from_a_new_client_on_a_fresh_node(upload_env: UploadEnv) -> None:
    data = jpeg_bytes(3_000_000, 11)
    token = upload_env.link.token
    meta = {"filename": "clip.jpg", "filetype": "image/jpeg", "submission": upload_env.link.submission.id}
    with LiveServer(upload_env.app) as first:
        c = tus.TusClient(f"{first.url}/u/files/", headers={"Authorization": f"Bearer {token}"})
        uploader = c.uploader(file_stream=io.BytesIO(data), chunk_size=512 << 10, metadata=meta)
        uploader.upload(stop_at=1 << 20)  # two chunks, then the client goes away
        url = uploader.url
        assert url is not None
        path = url.split(str(first.port), 1)[1]
        # A third PATCH breaks off after 300,000 of its 1 MiB: those bytes must be kept.
        _cut_patch(first.port, path, token, 1 << 20, data[1 << 20 : (1 << 20) + 300_000], 1 << 20)
        upload_id = path.rsplit("/", 1)[1]
        wait_until(lambda: _offset(first.url + path, token) == (1 << 20) + 300_000
                   and not upload_env.app.state.ctx.locker.held_here(upload_id))
    # Another node (a new app: no hash state, no locks) and a new client finish it.
    other = create_app(upload_env.settings, upload_env.db, upload_env.store, secret=upload_env.secret)
    with LiveServer(other) as second:
        c2 = tus.TusClient(f"{second.url}/u/files/", headers={"Authorization": f"Bearer {token}"})
        resumed = c2.uploader(file_stream=io.BytesIO(data), chunk_size=512 << 10, metadata=meta,
                              url=f"{second.url}{path}")
        assert resumed.offset == (1 << 20) + 300_000
        resumed.upload()
    with upload_env.db.read() as s:
        item = s.exec(select(EvidenceItem)).one()
    assert item.sha256 == hashlib.sha256(data).hexdigest()
    assert item.size == len(data)


def _offset(url: str, token: str) -> int:
    import httpx2

    r = httpx2.head(url, headers={"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"})
    return int(r.headers.get("upload-offset", "-1"))


def test_a_stalled_patch_is_cut_off_and_its_bytes_kept(db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """UP-05: a body that stops arriving is cut off after the idle timeout with 500,
    which tus clients retry (a 4xx would be final for them); the
    bytes it did send count, so an honest client on a bad network resumes from there."""
    import base64

    import httpx2

    from tests.fixtures.upload import make_env

    env = make_env(db, tmp_path, upload_idle_timeout_seconds=0.5)
    data = jpeg_bytes(1_000_000)
    meta = "submission " + base64.b64encode(env.link.submission.id.encode()).decode()
    auth = {"Authorization": f"Bearer {env.link.token}", "Tus-Resumable": "1.0.0"}
    with LiveServer(env.app) as server:
        r = httpx2.post(f"{server.url}/u/files/", headers={**auth, "Upload-Length": str(len(data)),
                                                           "Upload-Metadata": meta})
        path = r.headers["location"]
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
            s.sendall(
                f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {env.link.token}\r\n"
                f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Upload-Offset: 0\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data[:100_000]
            )
            answer = s.recv(4096)  # blocks until the server gives up on the body
        assert answer.startswith(b"HTTP/1.1 500")
        wait_until(lambda: not env.app.state.ctx.locker.held_here(path.rsplit("/", 1)[1]))
        r = httpx2.head(f"{server.url}{path}", headers=auth)
        assert r.headers["upload-offset"] == "100000"
