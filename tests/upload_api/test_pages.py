"""The citizen pages as the server renders them (no browser): the plain form a phone
without JavaScript posts, the limits in words, link problems that say what to do, the
statement JSON the script sends, receipts and status in citizen words, and pages free of
inline script and style (the CSP forbids them)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import httpx2
import pytest
from sqlmodel import select

from storage import links
from storage.db import Database
from storage.models import CustodyEvent, EvidenceItem, Submission, UploadLink
from tests.fixtures.upload import IssuedLink, UploadEnv, jpeg_bytes, make_env
from upload_api import tokens
from upload_api.context import TEMPLATES_DIR
from upload_api.pages import DECLARATION_VERSION, format_bytes

pytestmark = pytest.mark.anyio

STATEMENT = {
    "description": "The van that hit my car",
    "occurred_at": "Yesterday, 5pm",
    "location": "High Street",
    "contact_name": "",
    "contact_details": "",
    "declaration": "accepted",
    "declaration_version": DECLARATION_VERSION,
}


class Form(HTMLParser):
    """The form controls of a page, and anything the CSP would refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, str]] = []
        self.controls: list[dict[str, str]] = []
        self.labels: dict[str, str] = {}
        self.inline: list[str] = []
        self._label_for: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(a)
        if tag in ("input", "textarea", "select", "button"):
            self.controls.append({"tag": tag, **a})
        if tag == "label" and "for" in a:
            self._label_for = a["for"]
            self.labels[a["for"]] = ""
        if tag == "style" or (tag == "script" and "src" not in a):
            self.inline.append(tag)
        self.inline += [f"{tag}[{k}]" for k in a if k == "style" or k.startswith("on")]

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._label_for = None

    def handle_data(self, data: str) -> None:
        if self._label_for:
            self.labels[self._label_for] += data


def parse(html: str) -> Form:
    form = Form()
    form.feed(html)
    return form


def page_client(env: UploadEnv) -> httpx2.AsyncClient:
    """A browser-like client: cookies, no Bearer token."""
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=env.app), base_url="http://testserver")


async def open_link(client: httpx2.AsyncClient, link: IssuedLink) -> httpx2.Response:
    r = await client.get(f"/u/{link.token}")
    assert r.status_code == 303 and r.headers["location"] == "/u/"
    return await client.get("/u/")


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_the_upload_page_is_a_plain_multipart_form_with_every_field_labelled(upload_env: UploadEnv) -> None:
    async with page_client(upload_env) as c:
        r = await open_link(c, upload_env.link)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    page = parse(r.text)
    assert page.forms[0]["method"] == "post"
    assert page.forms[0]["action"] == "/u/submit"
    assert page.forms[0]["enctype"] == "multipart/form-data"
    named = {c.get("name") for c in page.controls}
    assert {"description", "occurred_at", "location", "contact_name", "contact_details",
            "declaration", "declaration_version", "files"} <= named
    declaration = next(c for c in page.controls if c.get("name") == "declaration")
    assert declaration["value"] == "accepted" and "required" in declaration
    version = next(c for c in page.controls if c.get("name") == "declaration_version")
    assert version == {"tag": "input", "type": "hidden", "name": "declaration_version", "value": DECLARATION_VERSION}
    files = [c for c in page.controls if c.get("name") == "files"]
    picker, camera = files
    assert "multiple" in picker and "image/heic" in picker["accept"] and "video/mp4" in picker["accept"]
    assert camera["capture"] == "environment"
    # Every visible control has a label.
    for control in page.controls:
        if control.get("type") not in ("hidden", "submit") and control["tag"] != "button":
            assert page.labels.get(control["id"], "").strip(), control
    # The declaration must come before the files: the server makes the submission when
    # the first file part arrives, and the browser sends fields in document order.
    order = [c.get("name") for c in page.controls]
    assert order.index("declaration") < order.index("files")
    assert page.inline == []


async def test_the_limits_are_shown_in_words_before_the_citizen_starts(db: Database, tmp_path: Path) -> None:
    env = make_env(db, tmp_path, max_file_bytes=2 << 30)
    link = env.new_link(reference="CAD/123", max_files=12, max_bytes=5 << 30)
    async with page_client(env) as c:
        r = await open_link(c, link)
    words = text_of(r.text)
    assert "report CAD/123" in words
    assert "Up to 12 files, 5 GB in total." in words
    assert "Each file can be up to 2 GB." in words
    assert "Photos: JPEG, PNG, HEIC, WebP, GIF or TIFF." in words
    assert "Videos: MP4, MOV, 3GP, AVI, MKV, WebM or MPEG-TS" in words
    assert f"This link works until {link.link.expires_at.day} " in words
    assert 'data-files-left="12"' in r.text and f'data-bytes-left="{5 << 30}"' in r.text


async def test_name_and_contact_are_optional_unless_the_setting_requires_them(db: Database, tmp_path: Path) -> None:
    for required in (False, True):
        env = make_env(db, tmp_path / str(required), require_contact=required)
        async with page_client(env) as c:
            r = await open_link(c, env.link)
            page = parse(r.text)
            name = next(x for x in page.controls if x.get("name") == "contact_name")
            assert ("required" in name) is required
            assert ("(optional)" in page.labels["contact_name"]) is not required
            r = await c.post("/u/submission", json=STATEMENT)
        if required:
            assert r.status_code == 400
            assert r.json()["error"]["field"] == "contact_name"
        else:
            assert r.status_code == 201


async def test_without_an_upload_session_the_page_says_to_open_the_link_again(upload_env: UploadEnv) -> None:
    async with page_client(upload_env) as c:
        r = await c.get("/u/")
    assert r.status_code == 403
    assert "Open the link from your message" in r.text
    assert "<form" not in r.text


@pytest.mark.parametrize("problem", ["unknown", "expired", "revoked", "exhausted"])
async def test_a_link_that_cannot_be_used_says_what_to_do(upload_env: UploadEnv, problem: str) -> None:
    link = upload_env.new_link(reference="CAD/777")
    token = link.token
    with upload_env.db.write() as s:
        row = s.get(UploadLink, link.link.id)
        assert row is not None
        if problem == "unknown":
            token = token[::-1]
        elif problem == "expired":
            row.expires_at = upload_env.db.now(s) - dt.timedelta(seconds=1)
        elif problem == "revoked":
            links.revoke_link(upload_env.db, s, row.id, actor="officer")
        else:
            row.used_files = row.max_files
        s.add(row)
    async with page_client(upload_env) as c:
        r = await c.get(f"/u/{token}")
    assert r.status_code == (404 if problem == "unknown" else 410)
    words = text_of(r.text)
    assert "What to do now" in words
    assert "contact the officer" in words.lower()
    # The report reference helps the officer, but only a real link may reveal it.
    assert ("CAD/777" in words) is (problem != "unknown")
    assert "set-cookie" not in r.headers


async def test_the_statement_becomes_a_submission_with_its_declaration_version(upload_env: UploadEnv) -> None:
    async with page_client(upload_env) as c:
        await open_link(c, upload_env.link)
        r = await c.post("/u/submission", json=STATEMENT)
        assert r.status_code == 201, r.text
        body = r.json()
        again = await c.get(f"/u/submission/{body['id']}")
    assert re.fullmatch(r"EXH-[0-9A-Z]{4}-[0-9A-Z]{4}", body["reference"])
    assert tokens.verify_status_token(upload_env.secret, body["status_token"]) == body["id"]
    assert again.json() == {**body, "files": []}
    with upload_env.db.read() as s:
        sub = s.get(Submission, body["id"])
        event = s.exec(select(CustodyEvent).where(CustodyEvent.action == "submission.created")
                       .order_by(CustodyEvent.seq.desc())).first()  # type: ignore[union-attr]
    assert sub is not None and sub.declaration_version == DECLARATION_VERSION
    assert sub.declaration_accepted_at is not None and sub.description == STATEMENT["description"]
    assert event is not None and event.detail["declaration_version"] == DECLARATION_VERSION


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"declaration": ""}, "declaration"),
        ({"declaration_version": "1999-01-1"}, "declaration"),
        ({"description": "   "}, "description"),
        ({"location": "x" * 501}, "location"),
    ],
)
async def test_a_statement_with_a_problem_names_the_field(upload_env: UploadEnv, change: dict[str, str], field: str) -> None:
    async with page_client(upload_env) as c:
        await open_link(c, upload_env.link)
        r = await c.post("/u/submission", json={**STATEMENT, **change})
    assert r.status_code in (400, 413)
    assert r.json()["error"]["field"] == field


async def test_the_statement_endpoint_refuses_forms_and_requests_without_a_session(upload_env: UploadEnv) -> None:
    async with page_client(upload_env) as c:
        r = await c.post("/u/submission", json=STATEMENT)
        assert (r.status_code, r.json()["error"]["code"]) == (401, "ERR_NO_SESSION")
        await open_link(c, upload_env.link)
        # Threat: a cross-site form posting as the citizen. Only JSON is accepted.
        r = await c.post("/u/submission", data=STATEMENT)
        assert (r.status_code, r.json()["error"]["code"]) == (415, "ERR_CONTENT_TYPE")
        r = await c.post("/u/submission", content=b"{" * 70_000, headers={"content-type": "application/json"})
        assert r.status_code == 413


async def test_one_links_session_cannot_read_another_links_submission(upload_env: UploadEnv) -> None:
    other = upload_env.new_link()
    async with page_client(upload_env) as c:
        await open_link(c, upload_env.link)
        r = await c.get(f"/u/submission/{other.submission.id}")
        assert r.status_code == 404
        r = await c.get(f"/u/submission/{upload_env.link.submission.id}")
        assert r.status_code == 200


async def send_file(env: UploadEnv, link: IssuedLink, submission_id: str, name: str, data: bytes) -> str:
    """One tus creation-with-upload; returns the upload URL."""
    meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}"
                    for k, v in {"filename": name, "filetype": "image/jpeg", "submission": submission_id}.items())
    async with env.client(link) as c:
        r = await c.post("/u/files/", content=data, headers={
            "Upload-Length": str(len(data)), "Upload-Metadata": meta,
            "Content-Type": "application/offset+octet-stream"})
        assert r.status_code == 201, r.text
        return str(r.headers["location"])


async def test_the_receipt_lists_each_file_with_size_hash_time_and_the_browser_check(upload_env: UploadEnv) -> None:
    sub = upload_env.link.submission
    good, bad, unchecked = jpeg_bytes(150_000, 1), jpeg_bytes(2_500_000, 2), jpeg_bytes(1000, 3)
    hostile = "<script>alert(1)</script>\u202egpj.exe"
    urls = [await send_file(upload_env, upload_env.link, sub.id, n, d)
            for n, d in (("good.jpg", good), ("bad.jpg", bad), (hostile, unchecked))]
    async with upload_env.client() as c:
        r = await c.post(f"{urls[0]}/client-sha256", json={"sha256": hashlib.sha256(good).hexdigest()})
        assert r.json()["match"] is True
        r = await c.post(f"{urls[1]}/client-sha256", json={"sha256": "0" * 64})
        assert r.json()["match"] is False
    token = tokens.status_token(upload_env.secret, sub.id)
    async with page_client(upload_env) as c:
        r = await c.get(f"/u/receipt/{token}")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    words = text_of(r.text)
    assert sub.reference in words and upload_env.link.report.reference in words
    for data in (good, bad, unchecked):
        assert hashlib.sha256(data).hexdigest() in r.text
    assert f"{format_bytes(len(bad))} (2,500,000 bytes)" in words
    assert re.search(r"\d{1,2} \w+ \d{4} at \d\d:\d\d:\d\d UTC", words)
    assert r.text.count('data-match="yes"') == 1
    assert r.text.count('data-match="no"') == 1
    assert r.text.count('data-match="not-checked"') == 1
    # The citizen's filename is display data: escaped, its bidi override removed.
    assert "<script>alert" not in r.text and "script&gt;gpj.exe" in r.text and "\u202e" not in r.text
    assert parse(r.text).inline == []
    assert f'href="/u/status/{token}"' in r.text


async def test_the_status_page_says_received_checked_or_with_the_officer_and_nothing_of_the_review(
    upload_env: UploadEnv,
) -> None:
    sub = upload_env.link.submission
    for i in range(4):
        await send_file(upload_env, upload_env.link, sub.id, f"f{i}.jpg", jpeg_bytes(5000, i))
    with upload_env.db.write() as s:
        items = s.exec(select(EvidenceItem).where(EvidenceItem.submission_id == sub.id)
                       .order_by(EvidenceItem.received_at)).all()  # type: ignore[arg-type]
        for item, state in zip(items, ["received", "scanning", "infected", "ready"], strict=True):
            item.state = state
            item.triage = "declined" if state == "ready" else "pending"
            s.add(item)
    token = tokens.status_token(upload_env.secret, sub.id)
    async with page_client(upload_env) as c:
        r = await c.get(f"/u/status/{token}")
    assert r.status_code == 200
    statuses = re.findall(r'data-status="(\w+)"', r.text)
    assert sorted(statuses) == ["being_checked", "received", "with_officer", "with_officer"]
    words = text_of(r.text).lower()
    for secret_word in ("infected", "declined", "virus found", "rejected", "ready"):
        assert secret_word not in words.replace("already", "")


async def test_a_forged_or_unknown_receipt_token_is_a_plain_not_found(upload_env: UploadEnv) -> None:
    sub_id = upload_env.link.submission.id
    forged = tokens.status_token(b"x" * 32, sub_id)
    async with page_client(upload_env) as c:
        for path in (f"/u/receipt/{forged}", f"/u/status/{forged}", "/u/receipt/nothing", f"/u/status/{sub_id}"):
            r = await c.get(path)
            assert r.status_code == 404
            assert "We could not find this receipt" in r.text


def test_no_template_has_inline_script_or_style() -> None:
    for path in TEMPLATES_DIR.rglob("*.html"):
        assert parse(path.read_text()).inline == [], path


def test_sizes_read_as_words() -> None:
    assert format_bytes(1) == "1 byte"
    assert format_bytes(1023) == "1023 bytes"
    assert format_bytes(10 << 30) == "10 GB"
    assert format_bytes(1536 << 20) == "1.5 GB"
    assert format_bytes(100_000) == "97.7 KB"
