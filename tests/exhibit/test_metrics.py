"""Prometheus ``/metrics`` on the staff door (issue 16 item 2): the numbers move when a
citizen uploads, an upload is refused, an officer signs in (and a wrong password is
refused) and the worker scans and processes; they come from the shared database, so
they are true whichever process or node did the work. The public door has no /metrics,
and on the staff door only addresses in EXHIBIT_METRICS_ALLOW may read it."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from exhibit.server import build_door
from processing.blobs import BlobBridge
from processing.clamd_manager import ClamdManager
from processing.worker import JOB_KIND, run_one
from storage import queue
from storage.secrets import load_or_create_secret
from storage.settings import Settings
from tests.fixtures.evidence import make_jpeg
from tests.fixtures.reviewer import Clock, ReviewHarness
from tests.fixtures.upload import UploadEnv

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def meta(env: UploadEnv, filetype: str = "image/jpeg") -> str:
    values = {"filename": "a.jpg", "filetype": filetype, "submission": env.link.submission.id}
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def staff_door(env: UploadEnv, tmp_path: Path, **changes: Any) -> tuple[Any, Settings]:
    settings = Settings(data_dir=env.settings.data_dir, database_url=env.db.url, storage_url=env.settings.storage_url,
                        **changes)
    app, _ = build_door(settings, env.db, env.store, "staff", health={})
    return app, settings


async def test_an_upload_a_refusal_a_sign_in_and_processing_move_the_numbers(
        upload_env: UploadEnv, tmp_path: Path, clamd: ClamdManager) -> None:
    door, settings = staff_door(upload_env, tmp_path)
    scraper = TestClient(door, base_url="http://staff", client=("127.0.0.1", 40000))
    before = scrape(scraper)

    photo = make_jpeg()
    async with upload_env.client() as c:
        done = await c.post("/u/files/", headers={"Upload-Length": str(len(photo)), "Upload-Metadata": meta(upload_env),
                                                  "Content-Type": "application/offset+octet-stream"}, content=photo)
        assert done.status_code == 201, done.text
        # Still open: 500 bytes of 5,000 received.
        partial = await c.post("/u/files/", headers={"Upload-Length": "5000", "Upload-Metadata": meta(upload_env),
                                                     "Content-Type": "application/offset+octet-stream"},
                               content=photo[:500])
        assert partial.status_code == 201, partial.text
        # Not a photo at all: refused while streaming.
        refused = await c.post("/u/files/", headers={"Upload-Length": "4096", "Upload-Metadata": meta(upload_env),
                                                     "Content-Type": "application/offset+octet-stream"},
                               content=b"MZ" + b"\0" * 4094)
        assert refused.status_code >= 400, refused.text

    officer_app = door
    harness = ReviewHarness(settings=settings, db=upload_env.db, app=officer_app, clock=Clock(follow_real_time=True),
                            secret=load_or_create_secret(settings.secret_key_file))  # type: ignore[arg-type]
    officer = harness.make_user("officer")
    browser = harness.client()
    wrong = harness.password_step(browser, officer, password="not the password")
    assert wrong.status_code in (200, 400, 401, 403), wrong.status_code
    harness.sign_in(harness.client(), officer)

    middle = scrape(scraper)
    assert value(middle, "exhibit_uploads_in_progress") == value(before, "exhibit_uploads_in_progress") + 1
    assert value(middle, "exhibit_upload_received_bytes_total") >= len(photo) + 500
    assert value(middle, "exhibit_uploads_ended_total", outcome="complete") == 1
    assert value(middle, "exhibit_uploads_ended_total", outcome="refused") == 1
    assert sum(v for (name, _), v in middle.items() if name == "exhibit_upload_refusals_total") == 1
    assert value(middle, "exhibit_queue_jobs", state="queued", lane="default") == 1
    assert value(middle, "exhibit_sign_ins_total", outcome="signed_in") == 1
    assert value(middle, "exhibit_sign_ins_total", outcome="refused") == 1
    assert value(middle, "exhibit_scan_verdicts_total", verdict="clean") == 0

    # The worker (its own process or node in production: here, this thread) processes it.
    blobs = BlobBridge.from_settings(settings)
    try:
        while (claim := queue.claim(upload_env.db, "metrics-test", kinds=[JOB_KIND], lease_seconds=30)) is not None:
            run_one(upload_env.db, blobs, clamd.scanner(), claim, lease_seconds=30, stop=__import__("threading").Event())
    finally:
        blobs.close()

    after = scrape(scraper)
    assert value(after, "exhibit_scan_verdicts_total", verdict="clean") == 1
    assert value(after, "exhibit_queue_jobs", state="queued", lane="default") == 0
    assert value(after, "exhibit_queue_jobs", state="done", lane="default") == 1
    for step in ("wait_and_verify", "scan", "derivatives", "total"):
        assert value(after, "exhibit_job_step_seconds_count", step=step) == 1, step
    assert value(after, "exhibit_custody_events_total", action="item.ready") == 1
    # A counter never goes back: scraping again changes nothing that did not happen.
    again = scrape(scraper)
    assert value(again, "exhibit_sign_ins_total", outcome="signed_in") == 1
    assert value(again, "exhibit_job_step_seconds_count", step="total") == 1


def test_no_metrics_on_the_public_door_nor_for_addresses_outside_the_allow_list(
        upload_env: UploadEnv, tmp_path: Path) -> None:
    public, _ = build_door(upload_env.settings, upload_env.db, upload_env.store, "public", health={})
    from_anywhere = TestClient(public, base_url="http://public", client=("127.0.0.1", 40000))
    assert from_anywhere.get("/metrics").status_code == 404

    door, _ = staff_door(upload_env, tmp_path)
    outsider = TestClient(door, base_url="http://staff", client=("203.0.113.9", 40000)).get("/metrics")
    assert outsider.status_code == 404 and "exhibit_" not in outsider.text
    assert TestClient(door, base_url="http://staff", client=("127.0.0.1", 40000)).get("/metrics").status_code == 200

    narrowed, _ = staff_door(upload_env, tmp_path, metrics_allow=("192.0.2.7",))
    assert TestClient(narrowed, base_url="http://staff", client=("10.1.2.3", 40000)).get("/metrics").status_code == 404
    assert TestClient(narrowed, base_url="http://staff", client=("192.0.2.7", 40000)).get("/metrics").status_code == 200
    # A forged X-Forwarded-For from an untrusted peer changes nothing.
    forged = TestClient(narrowed, base_url="http://staff", client=("203.0.113.9", 40000)).get(
        "/metrics", headers={"X-Forwarded-For": "192.0.2.7"})
    assert forged.status_code == 404


def test_by_default_only_loopback_reads_metrics_not_every_private_address(upload_env: UploadEnv,
                                                                          tmp_path: Path) -> None:
    # AC-17: behind the staff proxy every client (a partner organisation's too) has a
    # private address; the default allow-list must not let them read the numbers.
    door, _ = staff_door(upload_env, tmp_path)
    for partner in ("10.1.2.3", "172.16.5.5", "192.168.1.20", "fd00::5"):
        answer = TestClient(door, base_url="http://staff", client=(partner, 40000)).get("/metrics")
        assert answer.status_code == 404 and "exhibit_" not in answer.text, partner
    assert TestClient(door, base_url="http://staff", client=("::1", 40000)).get("/metrics").status_code == 200
    # Through the staff proxy (trusted), the forwarded client decides, not the proxy's address.
    proxied, _ = staff_door(upload_env, tmp_path, trusted_proxies=("10.0.0.2",), metrics_allow=("10.9.0.0/16",))
    via = TestClient(proxied, base_url="http://staff", client=("10.0.0.2", 40000))
    assert via.get("/metrics", headers={"X-Forwarded-For": "10.1.2.3"}).status_code == 404
    assert via.get("/metrics", headers={"X-Forwarded-For": "10.9.1.1"}).status_code == 200
    assert Settings.from_env({}).metrics_allow == ("127.0.0.0/8", "::1/128")
