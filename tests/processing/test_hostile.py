"""Hostile bytes end in safe, explained states (SECURITY_CHECKLIST BF-01, BF-05..BF-07,
BF-10, BF-12)."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from processing import images, video
from processing.clamd_manager import EICAR
from tests.fixtures.media import Media, hls_playlist
from tests.processing.conftest import Env, sha256


class Canary:
    """A loopback TCP listener that counts connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()

    def close(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone would not.
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=10)


@pytest.fixture
def canary() -> Iterator[Canary]:
    c = Canary()
    try:
        yield c
    finally:
        c.close()


def _fifo(tmp_path: Path) -> Path:
    # Opening a FIFO for reading blocks until a writer appears: a demuxer that tried to
    # read it would hang until its timeout instead of failing fast.
    path = tmp_path / "secret.ts"
    os.mkfifo(path)
    return path


def _nobody_reading(fifo: Path) -> bool:
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        return exc.errno == errno.ENXIO
    os.close(fd)
    return False


def test_playlist_control_unguarded_ffprobe_follows_local_segments(tmp_path: Path, media: Media) -> None:
    # Control: the playlist is live. Plain ffprobe (no forced demuxer) reads it as HLS
    # and opens the local file it names - what the guarded path must never do.
    secret = tmp_path / "secret.ts"
    shutil.copy(media.dashcam_ts, secret)
    playlist = tmp_path / "evidence.mp4"
    playlist.write_bytes(hls_playlist("http://127.0.0.1:9/x.ts", secret).replace(b"concat:", b"#"))
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=format_name", "-of", "csv=p=0",
                          str(playlist)], capture_output=True, timeout=60, check=False)
    assert b"hls" in out.stdout


@pytest.mark.parametrize("prefix", [b"", b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"], ids=["bare", "ftyp-polyglot"])
def test_hls_playlist_disguised_as_mp4_is_rejected_without_reading_its_targets(
    env: Env, canary: Canary, tmp_path: Path, prefix: bytes
) -> None:
    fifo = _fifo(tmp_path)
    data = prefix + hls_playlist(f"http://127.0.0.1:{canary.port}/seg.ts", fifo)
    item_id = env.ingest(data, "evidence.mp4")
    env.drain()
    item = env.item(item_id)
    assert item["state"] == "rejected", item
    assert item["reason"]
    assert item["derivatives"] == []
    # The guarded prober itself refuses it, whichever allowed demuxer it is forced into.
    work = tmp_path / "work"
    work.mkdir()
    (work / "input").write_bytes(data)
    for mime in video.DEMUXER_FOR_MIME:
        with pytest.raises(video.VideoRejected):
            video.probe(work, mime)
    assert canary.hits == 0
    assert _nobody_reading(fifo)
    # The original is kept byte-exact.
    with env.db.read() as s:
        from storage.models import EvidenceItem

        key = s.get(EvidenceItem, item_id).blob_key  # type: ignore[union-attr]
    assert env.read_blob(key) == data


def test_eicar_after_jpeg_eoi_is_infected_kept_and_never_rendered(env: Env, media: Media) -> None:
    item_id = env.ingest_file(media.eicar_jpeg)
    env.drain()
    item = env.item(item_id)
    assert item["state"] == "infected", item
    assert item["verdict"] == "infected"
    assert item["verdict_signature"] == "Exhibit.Test.EICAR.UNOFFICIAL"
    assert item["signature_db_version"].startswith("ClamAV")
    assert item["derivatives"] == []
    assert "item.derivative" not in env.actions(item_id)
    event = env.events(item_id, "item.infected")[0]
    assert event["tool"] == "clamd" and event["signature"] == "Exhibit.Test.EICAR.UNOFFICIAL"
    assert item["sha256"] == sha256(media.read("eicar_jpeg"))


def test_html_named_jpg_is_rejected_and_kept(env: Env, media: Media) -> None:
    item_id = env.ingest_file(media.html_jpg)
    env.drain()
    item = env.item(item_id)
    assert item["state"] == "rejected" and "not an allowed type" in item["reason"]
    assert item["derivatives"] == [] and item["verdict"] is None
    assert env.job(item_id).state == "done"


def test_pixel_flood_png_is_rejected_without_allocating(env: Env, media: Media) -> None:
    item_id = env.ingest_file(media.pixel_flood_png)
    env.drain()
    item = env.item(item_id)
    assert item["state"] == "rejected", item
    assert "pixel limit" in item["reason"]


def test_pixel_bomb_warning_is_an_error_inside_the_call_only(tmp_path: Path) -> None:
    # BF-07 config assertion: the limit is on, and a 100-180 MP image (a warning in
    # Pillow's default) is refused by our calls.
    assert Image.MAX_IMAGE_PIXELS is not None
    path = tmp_path / "big.png"
    # A PNG header declaring 12,000 x 10,000 (120 MP): above the limit, below 2x.
    from tests.fixtures.media import pixel_flood_png

    data = bytearray(pixel_flood_png())
    data[16:24] = (12_000).to_bytes(4, "big") + (10_000).to_bytes(4, "big")
    import struct
    import zlib

    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    with pytest.raises(images.ImageRejected, match="pixel limit"):
        images.check_decodes(path, "image/png")


def test_truncated_mp4_ends_in_an_explained_state_with_no_derivatives(env: Env, media: Media) -> None:
    item_id = env.ingest_file(media.truncated_mp4)
    env.drain()
    item = env.item(item_id)
    assert item["state"] == "rejected", item
    assert "moov" in item["reason"] or "readable" in item["reason"]
    assert item["derivatives"] == []


def test_derivatives_carry_no_payload_from_the_original(env: Env, media: Media) -> None:
    # BF-06/BF-09: the EXIF model holds "<script>": the rewritten pixels do not.
    item_id = env.ingest_file(media.jpeg_gps)
    env.drain()
    assert env.item(item_id)["state"] == "ready"
    for d in env.derivatives(item_id):
        assert b"<script>" not in env.read_blob(d.blob_key)
    assert "<script>" in env.item(item_id)["metadata"]["camera_model"]  # kept as data only


def test_stored_original_that_no_longer_matches_is_an_integrity_alarm(env: Env, media: Media) -> None:
    from storage.items import create_item

    data = media.read("jpeg_gps")
    key, _, size = env.blobs.put_bytes(data, "originals")
    with env.db.write() as s:
        item_id = create_item(env.db, s, report_id=env.report_id, blob_key=key, size=size,
                              sha256=sha256(data + b"tampered"), actor="test").id
    env.drain()
    summary = env.item(item_id)
    assert summary["state"] == "integrity_alarm" and summary["derivatives"] == []
    assert summary["verdict"] is None  # nothing further ran


def test_eicar_file_itself_is_infected(env: Env) -> None:
    item_id = env.ingest(EICAR, "x.jpg")
    env.drain()
    # Not an allowed type: rejected at sniff before any scan.
    assert env.item(item_id)["state"] == "rejected"


def test_infected_video_gets_no_derivative_even_though_transcode_overlaps_the_scan(env: Env, media: Media) -> None:
    # The transcode may start while clamd is still scanning; nothing is published
    # before a clean verdict, and the transcode is stopped once the verdict is known.
    item_id = env.ingest(media.read("hevc_mp4") + EICAR, "clip.mp4")
    env.drain()
    item = env.item(item_id)
    assert item["state"] == "infected", item
    assert item["derivatives"] == [] and "item.derivative" not in env.actions(item_id)
    assert item["metadata"] is None
    assert env.job(item_id).state == "done"
