"""End to end through the worker's steps: real clamd, real ffmpeg/ffprobe, Pillow, on
SQLite and PostgreSQL, a filesystem blob store."""

from __future__ import annotations

import io

from PIL import Image

from storage import ledger
from tests.fixtures.media import GPS_LAT, GPS_LON, Media
from tests.processing.conftest import Env, sha256


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_jpeg_with_gps_is_ready_with_oriented_stripped_derivatives(env: Env, media: Media) -> None:
    item_id = env.ingest_file(media.jpeg_gps)
    env.drain()
    item = env.item(item_id)
    assert item["state"] == "ready", item
    assert item["verified_sha256"] == item["sha256"] == sha256(media.read("jpeg_gps"))
    assert item["detected_type"] == "image/jpeg"
    assert item["verdict"] == "clean" and item["signature_db_version"].startswith("ClamAV")
    meta = item["metadata"]
    assert meta["camera_make"] == "ExhibitCam"
    assert meta["captured_at"] == "2026:01:02 03:04:05"
    assert abs(meta["gps"]["latitude"] - GPS_LAT) < 1e-3 and abs(meta["gps"]["longitude"] - GPS_LON) < 1e-3
    kinds = {d["kind"]: d for d in item["derivatives"]}
    assert set(kinds) == {"thumbnail", "preview"}
    for d in env.derivatives(item_id):
        data = env.read_blob(d.blob_key)
        assert sha256(data) == d.sha256 and len(data) == d.size and d.input_sha256 == item["sha256"]
        im = _open(data)
        # Orientation 6 applied: the 320x240 landscape pixels are shown portrait.
        assert im.width < im.height and max(im.size) <= (320 if d.kind == "thumbnail" else 2048)
        assert not im.getexif(), "metadata must be stripped"
        assert d.tool == "pillow" and d.tool_version.startswith("Pillow") and d.argv
    actions = env.actions(item_id)
    for action in ("item.received", "item.scanning", "item.verified", "item.sniffed", "item.clean",
                   "item.processing", "item.derivative", "item.metadata", "item.ready"):
        assert action in actions
    assert env.events(item_id, "item.clean")[0]["tool"] == "clamd"
    assert ledger.verify(env.db).ok
    assert env.job(item_id).state == "done"


def test_heic_gets_browser_viewable_jpeg_derivatives(env: Env, media: Media) -> None:
    item_id = env.ingest_file(media.heic)
    env.drain()
    item = env.item(item_id)
    assert item["state"] == "ready", item
    assert item["detected_type"] == "image/heic"
    assert item["metadata"]["camera_model"] == "iPhone 15"
    assert {d["mime_type"] for d in item["derivatives"]} == {"image/jpeg"}


def test_png_with_alpha_gets_webp_derivatives(env: Env, media: Media) -> None:
    item_id = env.ingest_file(media.png)
    env.drain()
    item = env.item(item_id)
    assert item["state"] == "ready", item
    assert {d["mime_type"] for d in item["derivatives"]} == {"image/webp"}


def test_rotated_phone_mov_gets_upright_h264_proxy_poster_and_metadata(env: Env, media: Media) -> None:
    item_id = env.ingest_file(media.rotated_mov)
    env.drain()
    item = env.item(item_id)
    assert item["state"] == "ready", item
    assert item["detected_type"] == "video/quicktime"
    meta = item["metadata"]
    assert meta["rotation"] == 90 and (meta["width"], meta["height"]) == (240, 320)
    assert 1.5 < meta["duration_seconds"] < 2.5
    assert meta["creation_time"].startswith("2026-01-02T03:04:05")
    assert meta["gps"] == {"latitude": 51.5007, "longitude": -0.1246}
    assert meta["video_codec"] == "h264"
    derivatives = {d.kind: d for d in env.derivatives(item_id)}
    assert set(derivatives) == {"poster", "thumbnail", "proxy"}
    proxy = derivatives["proxy"]
    assert proxy.mime_type == "video/mp4" and (proxy.width, proxy.height) == (240, 320)
    assert proxy.tool == "ffmpeg" and proxy.tool_version.startswith("ffmpeg version")
    assert "-protocol_whitelist" in (proxy.argv or []) and "+faststart" in (proxy.argv or [])
    data = env.read_blob(proxy.blob_key)
    assert sha256(data) == proxy.sha256
    # faststart: the moov box comes before mdat.
    assert data.index(b"moov") < data.index(b"mdat")
    assert env.job(item_id).progress == 100
    poster = _open(env.read_blob(derivatives["poster"].blob_key))
    assert poster.size == (240, 320)


def test_hevc_mp4_is_transcoded_to_h264(env: Env, media: Media) -> None:
    item_id = env.ingest_file(media.hevc_mp4)
    env.drain()
    item = env.item(item_id)
    assert item["state"] == "ready", item
    assert item["metadata"]["video_codec"] == "hevc"
    proxy = next(d for d in env.derivatives(item_id) if d.kind == "proxy")
    assert "libx264" in (proxy.argv or [])
    assert b"avc1" in env.read_blob(proxy.blob_key)[:4096] or b"avc1" in env.read_blob(proxy.blob_key)


def test_mpeg_ts_dashcam_clip_is_ready(env: Env, media: Media) -> None:
    item_id = env.ingest_file(media.dashcam_ts)
    env.drain()
    item = env.item(item_id)
    assert item["state"] == "ready", item
    assert item["detected_type"] == "video/mp2t"
    assert item["metadata"]["container"] == "mpegts"


def test_running_the_job_again_leaves_one_set_of_derivatives(env: Env, media: Media) -> None:
    from storage import queue

    item_id = env.ingest_file(media.jpeg_gps)
    env.drain()
    first = {d.kind: d.sha256 for d in env.derivatives(item_id)}
    # At-least-once delivery: the same job delivered again.
    with env.db.write() as s:
        queue.enqueue(s, "process_item", item_id=item_id, now=env.db.now(s))
    env.drain()
    assert {d.kind: d.sha256 for d in env.derivatives(item_id)} == first
    assert env.actions(item_id).count("item.ready") == 1
