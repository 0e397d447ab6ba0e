"""'Save this frame' (i15 item 5): an officer asks for a still at the instant on screen;
the worker makes it from the proxy at exactly that frame, records it with its argv and
the copy it came from, and the item page shows it with that provenance. Real ffmpeg, the
real worker entry point (``processing.worker.run_one``), a real blob store."""

from __future__ import annotations

import io
import subprocess
import threading
from pathlib import Path
from typing import cast

import pytest
from PIL import Image

from processing.blobs import BlobBridge
from processing.scanning import Scanner
from processing.worker import JOB_KINDS, run_one
from storage import queue
from storage.blobs.filesystem import FilesystemBlobStore
from tests.fixtures.casework import Casework

FPS = 10
FRAMES = 20


def colour_clip(tmp: Path) -> bytes:
    """An H.264 MP4 whose frame n is a flat grey of level 10 * n: a still names its frame."""
    out = tmp / "frames.mp4"
    raw = b"".join(Image.new("RGB", (64, 48), (10 * n,) * 3).tobytes() for n in range(FRAMES))
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x48",
         "-r", str(FPS), "-i", "pipe:0", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-g", "5",
         "-pix_fmt", "yuv444p", "-movflags", "+faststart", str(out)],
        input=raw, check=True, capture_output=True, timeout=60)
    return out.read_bytes()


def drain(cw: Casework, root: Path) -> list[str | None]:
    """Run the queued still jobs through the worker's own entry point."""
    bridge = BlobBridge(lambda: FilesystemBlobStore(root / "blobs"))
    results = []
    try:
        while (claim := queue.claim(cw.db, "test-worker", kinds=JOB_KINDS, lease_seconds=60)) is not None:
            # The scanner is not used by a still job (nothing new is ingested).
            results.append(run_one(cw.db, bridge, cast(Scanner, None), claim, lease_seconds=60,
                                   stop=threading.Event(), temp_root=root))
    finally:
        bridge.close()
    return results


@pytest.fixture
def clip(tmp_path: Path) -> bytes:
    return colour_clip(tmp_path)


@pytest.mark.both_databases  # a job, a unique derivative kind and two ledger events: PostgreSQL too
def test_an_officer_saves_a_frame_and_the_still_is_that_frame_with_its_provenance(
        casework: Casework, clip: bytes, tmp_path: Path) -> None:
    officer = casework.user("officer")
    seeded = casework.item(casework.report(officer), media="video", mp4=clip, filename="dashcam.mp4",
                           metadata={"duration_seconds": FRAMES / FPS,
                                     "streams": [{"type": "video", "frame_rate": f"{FPS}/1"}]})
    item = seeded.item
    client = casework.client(officer)
    page = client.get(f"/items/{item.id}").text
    assert 'data-frame-rate="10.000000"' in page and 'controlslist="nodownload' in page
    assert "disablepictureinpicture" in page and 'action="/items/' + item.id + '/stills"' in page
    # The player sends the presented frame's own time: frame 7 starts at 0.7 s.
    r = client.post(f"/items/{item.id}/stills", {"at": "0.700000"})
    assert r.status_code == 303 and r.headers["location"] == f"/items/{item.id}#stills"
    assert "Saving the frame at 0:00.700" in client.get(r.headers["location"]).text
    [asked] = casework.events("item.still_requested", item.id)
    assert asked.actor == officer.email and asked.detail == {"kind": "still-0.700", "at_seconds": "0.700000",
                                                             "source": "proxy"}
    # Asking twice for the same frame makes one still.
    client.get(client.post(f"/items/{item.id}/stills", {"at": "0.7"}).headers["location"])
    assert drain(casework, tmp_path) == ["saved"]

    [saved] = casework.events("item.still_saved", item.id)
    detail = saved.detail or {}
    assert saved.actor.startswith("worker:") and detail["requested_by"] == officer.email
    assert detail["source"] == "proxy" and detail["source_sha256"] == item.sha256  # the seeded proxy is the clip
    assert detail["argv"][0].endswith("ffmpeg") and "-ss" in detail["argv"] and "0.700000" in detail["argv"]
    assert detail["tool_version"].startswith("ffmpeg version")

    html = client.get(f"/items/{item.id}").text
    assert "Stills saved from this video" in html and "At 0:00.700" in html
    assert detail["sha256"] in html and "0.700000" in html  # the provenance: hash and argv
    still = client.get(f"/items/{item.id}/media/still-0.700")
    assert still.status_code == 200 and still.headers["content-type"] == "image/png"
    im = Image.open(io.BytesIO(still.content))
    assert im.size == (64, 48) and not im.info.get("exif")
    level = im.convert("RGB").getpixel((32, 24))[0]
    assert abs(level - 70) <= 3, level  # frame 7, not 6 or 8
    # The page that shows the still covers it: no media.stream for it.
    assert [e for e in casework.events("media.stream", item.id) if (e.detail or {}).get("kind") != "proxy"] == []


@pytest.mark.parametrize("at", ["", "-1", "abc", "1e9", "NaN", "2.5"])
def test_a_time_outside_the_video_is_refused_with_the_form(casework_video: Casework, at: str) -> None:
    officer = casework_video.user("officer")
    item = casework_video.item(casework_video.report(officer), media="video",
                               metadata={"duration_seconds": 2.0}).item
    r = casework_video.client(officer).post(f"/items/{item.id}/stills", {"at": at})
    assert r.status_code == 400 and 'href="#still-at"' in r.text
    assert casework_video.events("item.still_requested") == []


def test_an_auditor_or_stranger_cannot_ask_for_a_still(casework_video: Casework) -> None:
    officer = casework_video.user("officer")
    item = casework_video.item(casework_video.report(officer), media="video").item
    for who in (casework_video.user("auditor"), casework_video.user("officer"), casework_video.user("partner")):
        assert casework_video.client(who).post(f"/items/{item.id}/stills", {"at": "0.5"}).status_code == 404
    assert casework_video.events("item.still_requested") == []


def test_a_photo_has_no_stills(casework: Casework) -> None:
    officer = casework.user("officer")
    item = casework.item(casework.report(officer)).item
    r = casework.client(officer).post(f"/items/{item.id}/stills", {"at": "0.5"})
    assert r.status_code == 400 and casework.events("item.still_requested") == []
