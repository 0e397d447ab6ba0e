"""Work is bounded by the real input, not by what it claims (SECURITY_CHECKLIST BF-19),
and one slow item never holds the photos behind it.

The long-claim file is made here: ten 160x120 frames, the last one stamped 5.5 hours
after the ninth (about 16 KB). At a constant frame rate ffmpeg filled the gap with
~495,000 duplicated frames, under a watchdog scaled to the claimed duration (198,000 s).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from processing import video
from processing.worker import JOB_KIND, run_worker
from storage import queue
from storage.items import create_item
from storage.lifecycle import TERMINAL, ItemState
from tests.fixtures.media import Media
from tests.processing.conftest import Env

CLAIMED_SECONDS = 5.5 * 3600


def long_claim_mp4(path: Path) -> bytes:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-frames:v", "10",
         # frame N at N/25 s, except the last, stamped 5.5 hours in
         "-vf", f"setpts='if(eq(N,9),{CLAIMED_SECONDS:.0f}/TB,N/(25*TB))'", "-fps_mode", "passthrough",
         "-c:v", "libx264", "-preset", "ultrafast", "-video_track_timescale", "1000", str(path)],
        check=True, timeout=60,
    )
    return path.read_bytes()


def _packets(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-select_streams", "v:0",
                          "-show_entries", "stream=nb_read_packets", "-of", "json", str(path)],
                         capture_output=True, check=True, timeout=60).stdout
    return int(json.loads(out)["streams"][0]["nb_read_packets"])


def _wait_terminal(env: Env, ids: list[str], done: threading.Event, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(ItemState(env.item(i)["state"]) in TERMINAL for i in ids):
            return True
        done.wait(0.2)
    return False


def test_long_claim_file_takes_its_ten_frames_not_five_hours(env: Env, tmp_path: Path) -> None:
    data = long_claim_mp4(tmp_path / "long.mp4")
    assert len(data) < 32 * 1024
    item_id = env.ingest(data, "long.mp4")
    # Old code: ffmpeg writes ~495,000 frames; bounded here by cancelling the job.
    worker = threading.Thread(target=env.drain, daemon=True)
    worker.start()
    finished = _wait_terminal(env, [item_id], threading.Event(), 120)
    if not finished:
        env.stop.set()  # cancels the job: its ffmpeg is killed
    worker.join(timeout=60)
    assert finished, f"the 16 KB file still running after 120 s: {env.item(item_id)}"
    item = env.item(item_id)
    assert item["state"] == "ready", item
    proxy = next(d for d in env.derivatives(item_id) if d.kind == "proxy")
    out = tmp_path / "proxy.mp4"
    out.write_bytes(env.read_blob(proxy.blob_key))
    assert _packets(out) == 10  # the frames it holds, none invented
    assert item["metadata"]["duration_seconds"] > 19_000  # what it claims is kept as data


def test_limits_come_from_packets_and_size_not_the_claimed_duration(tmp_path: Path) -> None:
    (tmp_path / "input").write_bytes(long_claim_mp4(tmp_path / "long.mp4"))
    info, argv = video.probe(tmp_path, "video/mp4")
    assert "-count_packets" in argv and video.video_packets(info) == 10
    assert video.transcode_limits(info) < 120  # was max(120, 10 x 19,800 s) = 198,000 s
    proxy = video.proxy_argv(info, "video/mp4")
    assert proxy[proxy.index("-fps_mode") + 1] == "passthrough"
    assert proxy[proxy.index("-frames:v") + 1] == "10"


def test_a_spent_job_budget_stops_before_ffmpeg_starts(tmp_path: Path, media: Media) -> None:
    (tmp_path / "input").write_bytes(media.read("rotated_mov"))
    info, _ = video.probe(tmp_path, "video/quicktime")
    with pytest.raises(video.ToolTimeout, match="budget"):
        video.make_proxy(tmp_path, "video/quicktime", info, deadline=time.monotonic() - 1)
    with pytest.raises(video.ToolTimeout, match="budget"):
        video.make_poster(tmp_path, "video/quicktime", info, deadline=time.monotonic() - 1)
    assert not (tmp_path / "proxy.mp4").exists() and not (tmp_path / "poster.jpg").exists()


def test_intake_puts_a_video_in_the_video_lane_and_photo_slots_never_claim_it(env: Env) -> None:
    key, sha, size = env.blobs.put_bytes(b"\0\0\0\x18ftypmp42", "originals")
    with env.db.write() as s:
        item = create_item(env.db, s, report_id=env.report_id, blob_key=key, size=size, sha256=sha,
                           original_filename="clip.mp4", claimed_type="image/jpeg", detected_type="video/mp4",
                           actor="test:upload")
        item_id = item.id
    assert env.job(item_id).lane == queue.VIDEO_LANE
    assert queue.claim(env.db, "photo-slot", kinds=[JOB_KIND], lanes=[queue.DEFAULT_LANE]) is None
    claim = queue.claim(env.db, "video-slot", kinds=[JOB_KIND], lanes=[queue.VIDEO_LANE])
    assert claim is not None and claim.item_id == item_id and claim.lane == queue.VIDEO_LANE


def test_photos_uploaded_after_long_videos_become_ready_while_the_videos_hold_their_slot(
    env: Env, tmp_path: Path, media: Media
) -> None:
    # Two long-claim videos first (enqueued where the intake cannot tell: the default
    # lane); once one is in its transcode, three photos. The worker runs with its default
    # slots; each video is held at its transcode until the photos are ready. With every
    # slot taking any job, the second slot would take the second (older) video and no
    # photo would ever be processed.
    data = long_claim_mp4(tmp_path / "long.mp4")
    videos = [env.ingest(data, f"long-{i}.mp4") for i in range(2)]
    photos_ready = threading.Event()
    first_held = threading.Event()
    held: list[str] = []

    def hook(point: str, item_id: str) -> None:
        if point == "transcode" and item_id in videos:
            held.append(item_id)
            first_held.set()
            photos_ready.wait(90)

    stop = threading.Event()
    worker = threading.Thread(
        target=run_worker, args=(env.settings,),
        kwargs={"stop_event": stop, "scanner": env.scanner, "db": env.db, "poll_seconds": 0.1, "hook": hook},
        daemon=True,
    )
    worker.start()
    try:
        assert first_held.wait(60), [env.item(i) for i in videos]
        photos = [env.ingest_file(p) for p in (media.jpeg_gps, media.png, media.heic)]
        ready = _wait_terminal(env, photos, stop, 90)
        states = [env.item(i)["state"] for i in photos]
        video_states = [env.item(i)["state"] for i in videos]
        held_then = list(held)
        photos_ready.set()
        assert ready and states == ["ready"] * 3, (states, video_states)
        assert len(held_then) == 1 and "processing" in video_states, (held_then, video_states)
        assert _wait_terminal(env, videos, stop, 120), [env.item(i) for i in videos]
    finally:
        photos_ready.set()
        stop.set()
        worker.join(timeout=60)
    assert not worker.is_alive()
    assert [env.item(i)["state"] for i in videos] == ["ready", "ready"]
    assert {env.job(i).lane for i in videos} == {queue.VIDEO_LANE}
    assert {env.job(i).lane for i in photos} == {queue.DEFAULT_LANE}


def test_a_video_lane_worker_takes_video_and_leaves_older_photos_alone(
    env: Env, tmp_path: Path, media: Media
) -> None:
    # `exhibit worker --lane video`: the photo is older, so any slot serving the default
    # lane would have claimed it first.
    photo = env.ingest_file(media.jpeg_gps)
    data = long_claim_mp4(tmp_path / "long.mp4")
    key, sha, size = env.blobs.put_bytes(data, "originals")
    with env.db.write() as s:
        clip = create_item(env.db, s, report_id=env.report_id, blob_key=key, size=size, sha256=sha,
                           original_filename="long.mp4", detected_type="video/mp4", actor="test:upload").id
    stop = threading.Event()
    worker = threading.Thread(
        target=run_worker, args=(env.settings,),
        kwargs={"stop_event": stop, "scanner": env.scanner, "db": env.db, "poll_seconds": 0.1,
                "lanes": [queue.VIDEO_LANE]},
        daemon=True,
    )
    worker.start()
    try:
        assert _wait_terminal(env, [clip], stop, 90), env.item(clip)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert env.item(clip)["state"] == "ready"
    assert env.item(photo)["state"] == "received" and env.job(photo).attempts == 0
    with pytest.raises(ValueError, match="lane"):
        run_worker(env.settings, lanes=["bulk"], stop_event=stop, db=env.db, scanner=env.scanner)
