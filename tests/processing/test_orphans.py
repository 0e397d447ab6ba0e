"""Nothing left behind by a crash (issue 14 item 5): a kill -9 of a worker kills its
ffmpeg child too, and the sweep removes what the crash left (work directory, derivative
blobs with no row, unfinished uploads with no row) and never an original."""

from __future__ import annotations

import datetime as dt
import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from storage import fixity, sweep
from storage.blobs import open_store
from storage.blobs.filesystem import FilesystemBlobStore
from storage.models import utcnow
from tests.fixtures.media import Media, ffmpeg
from tests.processing.conftest import Env
from tests.processing.test_crash import _finish_with_fresh_worker

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A video whose proxy takes many seconds to make: ffmpeg is still running when the
    worker is killed."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=60",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path))
    return path


def spawn_worker(env: Env, point: str, tmpdir: Path) -> subprocess.Popen[bytes]:
    config = {
        "data_dir": str(env.settings.data_dir), "database_url": env.settings.database_url,
        "storage_url": env.settings.storage_url, "clamd_address": env.settings.clamd_address or "",
        "lease_seconds": str(env.settings.job_lease_seconds), "point": point, "mode": "block",
    }
    # The worker's work directories go under tmpdir (tempfile honours TMPDIR).
    return subprocess.Popen(
        [sys.executable, "-m", "tests.processing.worker_child", json.dumps(config)], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "TMPDIR": str(tmpdir)},
    )


def wait_paused(proc: subprocess.Popen[bytes], point: str, timeout: float = 120) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"worker never reached {point}"
    line = proc.stdout.readline().decode().split()
    assert line[:2] == ["PAUSED", point], line
    return line[2]


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_line = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        ppid = int(stat_line.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@pytest.fixture
def killed_mid_transcode(env: Env, long_video: Path, tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    """A worker killed -9 while its ffmpeg makes the proxy: (item id, ffmpeg's pidfd,
    the worker's temp dir)."""
    tmpdir = tmp_path / "worker-tmp"
    tmpdir.mkdir()
    item_id = env.ingest_file(long_video)
    proc = spawn_worker(env, "transcode", tmpdir)
    pidfd = -1
    try:
        assert wait_paused(proc, "transcode") == item_id
        ffmpegs = [p for p in children(proc.pid) if comm(p) == "ffmpeg"]
        assert len(ffmpegs) == 1, [(p, comm(p)) for p in children(proc.pid)]
        pidfd = os.pidfd_open(ffmpegs[0])
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        yield item_id, pidfd, tmpdir
    finally:
        if pidfd >= 0:
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.close(pidfd)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_kill_9_of_the_worker_kills_its_ffmpeg(killed_mid_transcode: tuple[str, int, Path]) -> None:
    _item_id, pidfd, _tmpdir = killed_mid_transcode
    # The pidfd becomes readable when ffmpeg has exited: an event, not a sleep. Before
    # the fix it ran on in its own session, transcoding for nobody.
    ready, _, _ = select.select([pidfd], [], [], 20)
    assert ready, "ffmpeg outlived its killed worker"


def _kill_at(env: Env, point: str, tmpdir: Path, item_id: str) -> None:
    proc = spawn_worker(env, point, tmpdir)
    try:
        assert wait_paused(proc, point) == item_id
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_sweep_removes_what_real_crashes_left_and_every_original_survives(
    env: Env, media: Media, killed_mid_transcode: tuple[str, int, Path],
) -> None:
    video_id, pidfd, tmpdir = killed_mid_transcode
    select.select([pidfd], [], [], 20)
    # A second crash: derivatives stored, killed before their rows committed.
    photo_id = env.ingest_file(media.jpeg_gps)
    _kill_at(env, "stored", tmpdir, photo_id)
    store = FilesystemBlobStore(env.settings.data_dir / "blobs")
    rows = {d.blob_key for d in env.derivatives(video_id)}
    derivative_blobs = {k for k, _ in anyio.run(lambda: store.sweep_list("derivatives", finished=True))} - rows
    assert len(derivative_blobs) == 2 and env.derivatives(photo_id) == []  # thumbnail + preview, no rows
    work_dirs = sorted(str(p) for p in tmpdir.glob("exhibit-job-*"))
    # One per job a killed worker was running (the second may have re-claimed the video
    # too), each with a copy of an original.
    assert len(work_dirs) >= 2

    later = utcnow() + dt.timedelta(seconds=env.settings.sweep_grace_seconds + 60)
    report = sweep.run(env.db, lambda: open_store(env.settings), grace_seconds=env.settings.sweep_grace_seconds,
                       temp_root=tmpdir, now=later)
    assert report.errors == []
    assert sorted(report.orphan_derivatives) == sorted(derivative_blobs)
    assert sorted(report.work_dirs) == work_dirs
    assert report.unreferenced_originals == []
    assert list(tmpdir.glob("exhibit-job-*")) == []
    assert {k for k, _ in anyio.run(lambda: store.sweep_list("derivatives", finished=True))} == rows
    # Every original is intact, byte for byte (re-hashed against its ingest hash).
    proof = fixity.run(env.db, lambda: open_store(env.settings), actor="test")
    assert sorted((o.item_id, o.result) for o in proof.outcomes) == sorted([(video_id, "ok"), (photo_id, "ok")])
    # And the interrupted jobs still finish, with derivatives made afresh.
    _finish_with_fresh_worker(env, photo_id)
    assert env.item(photo_id)["state"] == "ready"
    for d in env.derivatives(photo_id):
        assert env.read_blob(d.blob_key)
