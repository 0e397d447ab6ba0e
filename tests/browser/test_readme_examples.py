"""Every example of the README's "Uploading from scripts and apps" runs, as written,
against a real server (issue 17.7): curl over tus, curl on the multipart door, tuspy, and
tus-js-client in Chromium. Each sends its own file; the server must hold it as evidence
with the file's SHA-256. An example that drifts from the protocol fails here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Browser
from sqlmodel import select

from storage.db import Database
from storage.models import EvidenceItem
from tests.browser.conftest import Citizen, new_context
from tests.browser.media import jpeg

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
TUS_JS = ROOT / "upload_api" / "static" / "vendor" / "tus.min.js"
EXAMPLE = re.compile(r"<!-- example: ([\w-]+) -->\n```(\w+)\n(.*?)```", re.S)


def examples() -> dict[str, tuple[str, str]]:
    return {name: (lang, code) for name, lang, code in EXAMPLE.findall((ROOT / "README.md").read_text())}


def held(citizen: Citizen, sha256: str) -> list[EvidenceItem]:
    db = Database(citizen.server.settings.database_url)
    try:
        with db.read() as s:
            return list(s.exec(select(EvidenceItem).where(EvidenceItem.sha256 == sha256)).all())
    finally:
        db.dispose()


def test_the_readme_has_one_example_per_client() -> None:
    assert {name: lang for name, (lang, _code) in examples().items()} == {
        "curl-tus": "sh", "curl-multipart": "sh", "tuspy": "python", "tus-js-client": "js"}


@pytest.mark.parametrize("name", ["curl-tus", "curl-multipart", "tuspy"])
def test_a_script_example_sends_a_file_that_becomes_evidence(name: str, citizen: Citizen, tmp_path: Path) -> None:
    lang, code = examples()[name]
    photo = tmp_path / f"{name}.jpg"
    expected = jpeg(photo, 300_000, seed=len(name))
    env = {**os.environ, "EXHIBIT_URL": citizen.server.base_url,
           "EXHIBIT_TOKEN": citizen.link_url.rsplit("/", 1)[1], "FILE": str(photo)}
    command = ["bash", "-euo", "pipefail", "-c", code] if lang == "sh" else [sys.executable, "-c", code]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    [item] = held(citizen, expected)
    assert item.original_filename == photo.name


def test_the_tus_js_client_example_sends_a_file_that_becomes_evidence(
    chromium: Browser, citizen: Citizen, tmp_path: Path
) -> None:
    _lang, code = examples()["tus-js-client"]
    photo = tmp_path / "browser.jpg"
    expected = jpeg(photo, 400_000, seed=3)
    # A page of the server's own origin (no CORS); the server's CSP forbids injected
    # scripts, so this context bypasses it to load the client and the example.
    context = new_context(chromium, bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(f"{citizen.server.base_url}/healthz")
        page.add_script_tag(path=str(TUS_JS))
        page.evaluate(
            "async ({url, token, bytes, name, code}) => {"
            "  const file = new File([new Uint8Array(bytes)], name, {type: 'image/jpeg'});"
            "  const run = new Function('EXHIBIT_URL', 'EXHIBIT_TOKEN', 'file', 'tus',"
            "                           'return (async () => {' + code + '})();');"
            "  await run(url, token, file, window.tus);"
            "}",
            {"url": citizen.server.base_url, "token": citizen.link_url.rsplit("/", 1)[1],
             "bytes": list(photo.read_bytes()), "name": photo.name, "code": code},
        )
    finally:
        context.close()
    [item] = held(citizen, expected)
    assert item.original_filename == "browser.jpg"
