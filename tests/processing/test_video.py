"""ffprobe/ffmpeg adapter on real generated media: progress, limits, metadata capping
(SECURITY_CHECKLIST BF-09, BF-14)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from processing import video
from tests.fixtures.media import Media, ffmpeg


def _work(tmp_path: Path, source: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(source, work / "input")
    return work


def test_proxy_reports_progress_up_to_100(tmp_path: Path, media: Media) -> None:
    work = _work(tmp_path, media.rotated_mov)
    info, _ = video.probe(work, "video/quicktime")
    seen: list[int] = []
    out = video.make_proxy(work, "video/quicktime", info, on_progress=seen.append)
    assert seen and seen[-1] == 100 and seen == sorted(seen)
    assert (out.width, out.height) == (240, 320)


def test_video_larger_than_the_side_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    source = tmp_path / "wide.mkv"
    ffmpeg("-f", "lavfi", "-i", f"color=size={video.MAX_SIDE_PX + 8}x16:duration=0.2", "-c:v", "ffv1", str(source))
    work = _work(tmp_path, source)
    with pytest.raises(video.VideoRejected, match="limit"):
        video.probe(work, "video/x-matroska")


def test_hostile_container_tags_are_capped_and_kept_as_data(tmp_path: Path, media: Media) -> None:
    source = tmp_path / "tags.mov"
    long_text = "\u202e<script>alert(1)</script>\r\n" + "A" * 65536
    ffmpeg("-i", str(media.rotated_mov), "-c", "copy", "-metadata", f"com.apple.quicktime.model={long_text}",
           "-metadata", "com.apple.quicktime.location.ISO6709=+999.0+999.0/",
           "-movflags", "use_metadata_tags", "-f", "mov", str(source))
    work = _work(tmp_path, source)
    info, _ = video.probe(work, "video/quicktime")
    meta = video.metadata(info)
    assert len(meta["camera_model"]) <= video.MAX_TEXT
    assert "gps" not in meta  # out-of-range coordinates are not believed


@pytest.mark.parametrize(("width", "height", "expected"), [
    (3840, 2160, (1920, 1080)), (1080, 1920, (1080, 1920)), (2160, 3840, (1080, 1920)),
    (320, 240, (320, 240)), (1441, 1081, (1438, 1080)),
])
def test_proxy_size_fits_1080p_either_way_without_upscaling(width: int, height: int, expected: tuple[int, int]) -> None:
    assert video.proxy_size(width, height) == expected


def test_every_run_is_guarded(media: Media) -> None:
    info = {"format": {"duration": "2"}, "streams": [{"index": 0, "codec_type": "video", "width": 320, "height": 240}]}
    for argv in (video.proxy_argv(info, "video/mp4"), video.poster_argv(info, "video/mp4")):
        assert "-nostdin" in argv
        i = argv.index("-i")
        assert argv[argv.index("-protocol_whitelist") + 1] == "file,pipe"
        assert argv.index("-protocol_whitelist") < i and argv.index("-f") < i
        assert argv[argv.index("-f") + 1] == "mov" and argv[i + 1] == "file:input"
    assert "+faststart" in video.proxy_argv(info, "video/mp4")
