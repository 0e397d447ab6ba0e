"""POST /u/submit: the streamed multipart door (no-JS form and scripts)."""

from __future__ import annotations

import hashlib

import pytest
from sqlmodel import select

from storage.models import EvidenceItem, Upload, UploadLink, UploadState
from tests.fixtures.upload import UploadEnv, jpeg_bytes

pytestmark = pytest.mark.anyio

FORM = {"description": "a car", "occurred_at": "yesterday", "location": "High St", "declaration": "accepted",
        "declaration_version": "v1"}


async def test_form_with_two_files_gives_a_receipt_with_both_hashes(upload_env: UploadEnv) -> None:
    a, b = jpeg_bytes(200_000, 1), jpeg_bytes(70_000, 2)
    async with upload_env.client() as c:
        r = await c.post("/u/submit", data=FORM, files=[("files", ("a.jpg", a, "image/jpeg")),
                                                        ("files", ("b.jpg", b, "image/jpeg"))])
    assert r.status_code == 201, r.text
    receipt = r.json()
    assert receipt["reference"].startswith("EXH-")
    assert receipt["report_reference"] == upload_env.link.report.reference
    assert sorted(f["sha256"] for f in receipt["files"]) == sorted(
        hashlib.sha256(x).hexdigest() for x in (a, b))
    with upload_env.db.read() as s:
        link = s.get(UploadLink, upload_env.link.link.id)
        assert link is not None and link.used_files == 2 and link.used_bytes == len(a) + len(b)


async def test_html_client_is_redirected_to_its_receipt(upload_env: UploadEnv) -> None:
    async with upload_env.client() as c:
        r = await c.post("/u/submit", data=FORM, files=[("files", ("a.jpg", jpeg_bytes(5000), "image/jpeg"))],
                         headers={"Accept": "text/html"})
    assert r.status_code == 303
    assert r.headers["location"].startswith("/u/receipt/")


async def test_form_without_the_declaration_stores_nothing(upload_env: UploadEnv) -> None:
    form = {k: v for k, v in FORM.items() if k != "declaration"}
    async with upload_env.client() as c:
        r = await c.post("/u/submit", data=form, files=[("files", ("a.jpg", jpeg_bytes(5000), "image/jpeg"))])
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "ERR_DECLARATION_REQUIRED"
    with upload_env.db.read() as s:
        assert s.exec(select(Upload)).all() == []


async def test_renamed_html_is_refused_with_a_readable_message_and_deleted(upload_env: UploadEnv) -> None:
    html = b"<!doctype html><script>alert(1)</script>" + b" " * 10_000
    async with upload_env.client() as c:
        r = await c.post("/u/submit", data=FORM, files=[("files", ("photo.jpg", html, "image/jpeg"))])
        assert r.status_code == 415
        assert "photo or video" in r.json()["error"]["message"]
        r = await c.post("/u/submit", data=FORM, files=[("files", ("photo.jpg", html, "image/jpeg"))],
                         headers={"Accept": "text/html"})
        assert r.status_code == 415
        assert "photo or video" in r.text
    with upload_env.db.read() as s:
        ups = s.exec(select(Upload)).all()
        assert ups and all(u.state == UploadState.REFUSED for u in ups)
        assert s.exec(select(EvidenceItem)).all() == []
    assert not list((upload_env.settings.data_dir.parent / "blobs" / "incoming" / "originals").glob("*"))


async def test_file_over_the_link_quota_is_413_and_never_evidence(upload_env: UploadEnv) -> None:
    small = upload_env.new_link(max_bytes=100_000)
    async with upload_env.client(small) as c:
        r = await c.post("/u/submit", data=FORM, files=[("files", ("a.jpg", jpeg_bytes(100_001), "image/jpeg"))])
        assert r.status_code == 413
        r = await c.post("/u/submit", data=FORM, files=[("files", ("a.jpg", jpeg_bytes(100_000), "image/jpeg"))])
        assert r.status_code == 201
    with upload_env.db.read() as s:
        assert len(s.exec(select(EvidenceItem)).all()) == 1


async def test_empty_file_is_refused(upload_env: UploadEnv) -> None:
    async with upload_env.client() as c:
        r = await c.post("/u/submit", data=FORM, files=[("files", ("a.jpg", b"", "image/jpeg"))])
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "ERR_EMPTY_FILE"


async def test_too_many_fields_is_400(upload_env: UploadEnv) -> None:
    form = {f"f{i}": "x" for i in range(50)}
    async with upload_env.client() as c:
        r = await c.post("/u/submit", data=form, files=[("files", ("a.jpg", jpeg_bytes(100), "image/jpeg"))])
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "ERR_TOO_MANY_PARTS"


async def test_cross_origin_post_is_refused(upload_env: UploadEnv) -> None:
    async with upload_env.client() as c:
        r = await c.post("/u/submit", data=FORM, files=[("files", ("a.jpg", jpeg_bytes(100), "image/jpeg"))],
                         headers={"Origin": "https://evil.example"})
    assert r.status_code == 403


async def test_opaque_origin_is_accepted_only_from_the_same_site(upload_env: UploadEnv) -> None:
    # Chromium sends "Origin: null" on a same-origin form post under our no-referrer
    # policy; fetch metadata decides.
    files = [("files", ("a.jpg", jpeg_bytes(100), "image/jpeg"))]
    async with upload_env.client() as c:
        cross = await c.post("/u/submit", data=FORM, files=files,
                             headers={"Origin": "null", "Sec-Fetch-Site": "cross-site"})
        bare = await c.post("/u/submit", data=FORM, files=files, headers={"Origin": "null"})
        same = await c.post("/u/submit", data=FORM, files=files,
                            headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"})
    assert cross.status_code == 403
    assert bare.status_code == 403
    assert same.status_code == 201, same.text
