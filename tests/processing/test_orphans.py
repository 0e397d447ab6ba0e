"""Nothing left behind by a crash (issue 14 item 5): a kill -9 of a worker kills its
ffmpeg child too, and the sweep removes what the crash left (work directory, derivative
blobs with no row, unfinished uploads with no row) and never an original."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.media import ffmpeg
from tests.processing.conftest import Env

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
