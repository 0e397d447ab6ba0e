"""kill -9 a worker process at each stage; another worker takes the job when the lease
lapses and the item still ends correctly, once, with one set of derivatives
(SECURITY_CHECKLIST CF-04, CF-05). SIGTERM releases the job without spending an attempt.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from processing.worker import run_worker
from storage import ledger
from storage.lifecycle import TERMINAL, ItemState
from tests.fixtures.media import Media
from tests.processing.conftest import Env

ROOT = Path(__file__).resolve().parents[2]


def _spawn(env: Env, point: str, mode: str) -> subprocess.Popen[bytes]:
    config = {
        "data_dir": str(env.settings.data_dir),
        "database_url": env.settings.database_url,
        "storage_url": env.settings.storage_url,
        "clamd_address": env.settings.clamd_address or "",
        "lease_seconds": str(env.settings.job_lease_seconds),
        "point": point,
        "mode": mode,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.processing.worker_child", json.dumps(config)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )


def _wait_paused(proc: subprocess.Popen[bytes], point: str, timeout: float = 90) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"worker never reached {point}"
    line = proc.stdout.readline().decode().split()
    assert line[:2] == ["PAUSED", point], line
    return line[2]


def _finish_with_fresh_worker(env: Env, item_id: str, timeout: float = 90) -> None:
    """Run a worker in this process until the item is terminal (polling the database
    with a deadline: the re-claim waits for the killed worker's lease to lapse)."""
    stop = threading.Event()
    thread = threading.Thread(
        target=run_worker, args=(env.settings,),
        kwargs={"concurrency": 1, "stop_event": stop, "scanner": env.scanner, "db": env.db, "poll_seconds": 0.2},
        daemon=True,
    )
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ItemState(env.item(item_id)["state"]) in TERMINAL:
                break
            stop.wait(0.2)
    finally:
        stop.set()
        thread.join(timeout=30)


@pytest.mark.parametrize("point", ["scan", "transcode", "before_ready"])
def test_worker_killed_mid_step_item_finishes_once(env: Env, media: Media, point: str) -> None:
    item_id = env.ingest_file(media.rotated_mov)
    proc = _spawn(env, point, "block")
    try:
        assert _wait_paused(proc, point) == item_id
        before = {d.kind: (d.blob_key, d.sha256) for d in env.derivatives(item_id)}
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    _finish_with_fresh_worker(env, item_id)
    item = env.item(item_id)
    assert item["state"] == "ready", item
    derivatives = env.derivatives(item_id)
    assert sorted(d.kind for d in derivatives) == ["poster", "proxy", "thumbnail"]
    if point == "before_ready":
        # The derivatives committed before the kill are the ones kept: not made twice.
        assert {d.kind: (d.blob_key, d.sha256) for d in derivatives} == before
    actions = env.actions(item_id)
    assert actions.count("item.ready") == 1
    assert actions.count("item.clean") == 1
    assert actions.count("item.derivative") == 3
    job = env.job(item_id)
    assert job.state == "done" and job.attempts == 2
    assert ledger.verify(env.db).ok


def test_job_that_kills_its_worker_every_time_goes_dead_and_item_is_explained(env: Env, media: Media) -> None:
    item_id = env.ingest_file(media.jpeg_gps, max_attempts=1)
    proc = _spawn(env, "scan", "block")
    try:
        _wait_paused(proc, "scan")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    _finish_with_fresh_worker(env, item_id)
    item = env.item(item_id)
    # No verdict was ever reached: never clean, a human must decide.
    assert item["state"] == "unscannable", item
    assert "lease lapsed" in item["reason"]
    assert env.job(item_id).state == "dead"


def test_sigterm_releases_the_job_and_the_next_worker_finishes_it(env: Env, media: Media) -> None:
    item_id = env.ingest_file(media.rotated_mov)
    proc = _spawn(env, "transcode", "until_stop")
    try:
        _wait_paused(proc, "transcode")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    job = env.job(item_id)
    assert job.state == "queued" and job.attempts == 0  # released, attempt not spent
    assert env.item(item_id)["state"] == "processing"
    env.drain()
    item = env.item(item_id)
    assert item["state"] == "ready", item
    assert sorted(d.kind for d in env.derivatives(item_id)) == ["poster", "proxy", "thumbnail"]


def test_worker_child_module_is_importable() -> None:
    # The crash tests rely on it; a clear failure beats a hang.
    out = subprocess.run([sys.executable, "-c", "import tests.processing.worker_child"], cwd=ROOT,
                         capture_output=True, timeout=60, env={**os.environ}, check=False)
    assert out.returncode == 0, out.stderr.decode()[-500:]
