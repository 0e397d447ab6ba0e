"""kill -9 of the server in the middle of a PATCH: after a restart the client asks HEAD,
resumes from the offset the store kept, and the evidence hash is the file's (the hash
state died with the process; the restarted one computes it from the sealed bytes)."""

from __future__ import annotations

import hashlib
import io
import socket

from sqlmodel import select
from tusclient import client as tus

from storage import submissions
from storage.db import Database
from storage.links import hash_token
from storage.models import EvidenceItem, UploadLink
from tests.fixtures.upload import jpeg_bytes
from tests.fixtures.upload_server import UploadServer, make_upload_link


def test_upload_survives_kill_9_mid_patch_and_resumes_to_the_same_hash(upload_server: UploadServer) -> None:
    url, _ref = make_upload_link(upload_server.data_dir, base_url=upload_server.base_url)
    token = url.rsplit("/", 1)[1]
    db = Database(upload_server.settings.database_url)
    try:
        with db.write() as s:
            link = s.exec(select(UploadLink).where(UploadLink.token_hash == hash_token(token))).one()
            submission = submissions.create_submission(db, s, link, declaration_accepted=True, actor="test")
        data = jpeg_bytes(6_000_000, 3)
        meta = {"filename": "clip.jpg", "filetype": "image/jpeg", "submission": submission.id}
        auth = {"Authorization": f"Bearer {token}"}
        first = tus.TusClient(f"{upload_server.base_url}/u/files/", headers=auth)
        uploader = first.uploader(file_stream=io.BytesIO(data), chunk_size=1 << 20, metadata=meta)
        uploader.upload(stop_at=2 << 20)
        assert uploader.url is not None
        path = "/" + uploader.url.split("/", 3)[3]

        # A PATCH for the rest is half sent when the server is killed.
        sock = socket.create_connection(("127.0.0.1", upload_server.port))
        rest = len(data) - (2 << 20)
        sock.sendall(
            f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Upload-Offset: {2 << 20}\r\nContent-Length: {rest}\r\n\r\n".encode()
            + data[2 << 20 : (2 << 20) + 1_500_000]
        )
        upload_server.kill()
        sock.close()
        upload_server.start()

        second = tus.TusClient(f"{upload_server.base_url}/u/files/", headers=auth)
        resumed = second.uploader(file_stream=io.BytesIO(data), chunk_size=1 << 20, metadata=meta,
                                  url=f"{upload_server.base_url}{path}")
        assert (2 << 20) <= resumed.offset <= (2 << 20) + 1_500_000
        resumed.upload()
        with db.read() as s:
            item = s.exec(select(EvidenceItem)).one()
        assert item.sha256 == hashlib.sha256(data).hexdigest()
        assert item.size == len(data)
    finally:
        db.dispose()
