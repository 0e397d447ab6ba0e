"""What officers see of a citizen whose files were refused (issue 17.7): the submission
appears on the report only once a file of it has been received (no empty "Files 0"
submission), and every refused attempt is listed with the file's name, size and why."""

from __future__ import annotations

import base64
from pathlib import Path

from starlette.testclient import TestClient

from storage.blobs.filesystem import FilesystemBlobStore
from storage.links import create_link
from storage.settings import Settings
from tests.fixtures.casework import Casework
from tests.fixtures.upload import jpeg_bytes
from upload_api.app import create_app
from upload_api.pages import DECLARATION_VERSION


def _send(c: TestClient, submission: str, name: str, data: bytes) -> int:
    meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}"
                    for k, v in {"filename": name, "filetype": "image/jpeg", "submission": submission}.items())
    r = c.post("/u/files/", headers={"Upload-Length": str(len(data)), "Upload-Metadata": meta})
    assert r.status_code == 201, r.text
    r = c.patch(r.headers["location"], content=data,
                headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    return r.status_code


def _statement(c: TestClient, words: str) -> dict[str, str]:
    r = c.post("/u/submission", json={"description": words, "declaration": "accepted",
                                      "declaration_version": DECLARATION_VERSION})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_refused_attempts_leave_no_empty_submission_and_are_listed_for_officers(
    casework: Casework, tmp_path: Path
) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    with casework.db.write() as session:
        issued = create_link(casework.db, session, report, public_url="http://testserver", expires_in_seconds=3600,
                             max_files=5, max_bytes=10 << 20, actor="test")
    store = FilesystemBlobStore(tmp_path / "upload-blobs")
    settings = Settings(data_dir=tmp_path / "upload-data", storage_url=f"file://{tmp_path / 'upload-blobs'}")
    upload_app = create_app(settings, casework.db, store, secret=b"s" * 32)
    with TestClient(upload_app, headers={"Authorization": f"Bearer {issued.token}",
                                         "Tus-Resumable": "1.0.0"}) as citizen:
        # First try: the only file is an HTML page named .jpg; it is refused.
        refused = _statement(citizen, "First try")
        assert _send(citizen, refused["id"], "holiday<b>.jpg", b"<!doctype html><p>no photo</p>".ljust(3030)) == 415
        # Second try: a real photo arrives.
        received = _statement(citizen, "Second try")
        assert _send(citizen, received["id"], "car.jpg", jpeg_bytes(4000)) == 204

    page = casework.client(officer).get(f"/reports/{report.id}")
    assert page.status_code == 200
    html = page.text
    assert received["reference"] in html and "Second try" in html
    # The statement whose every file was refused is not shown as a submission...
    assert refused["reference"] not in html and "First try" not in html
    # ...but the attempt is: name (escaped), size and reason.
    table = html.split('id="refused-files"', 1)[1].split("</table>", 1)[0]
    assert "holiday&lt;b&gt;.jpg" in table
    assert "3.0 KiB" in table  # 3,030 bytes
    assert "not a photo or video we accept" in table
    assert "car.jpg" not in table
