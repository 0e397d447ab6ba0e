"""Nothing of the original's text reaches a derivative (SECURITY_CHECKLIST BF-06, BF-18).

Each allowed format is made at test time with a unique marker in every metadata
container it has (``tests/fixtures/planted.py`` lists them), sent through the whole
pipeline, and every byte of every derivative (thumbnail, preview, poster, proxy) is
searched for the marker in ASCII, UTF-16LE and UTF-16BE. A derivative also names no
tool version (``Lavf59``, ``Lavc59``, ``x264 - core 164``): those go to the custody
event. The proxy is probed as well: only one video and at most one audio stream, no
chapters, no tags of the original's.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.fixtures import planted
from tests.processing.conftest import Env

VERSION_TAGS = re.compile(rb"Lav[fc]\d|x264 - core|libx265 \(|encoder\x00|Lavf\d")


def _check(env: Env, item: planted.Planted, tmp_path: Path) -> list[str]:
    assert item.containers, "nothing planted"
    item_id = env.ingest(item.data, item.name)
    env.drain()
    summary = env.item(item_id)
    assert summary["state"] == "ready", summary
    kinds = []
    for d in env.derivatives(item_id):
        data = env.read_blob(d.blob_key)
        for encoded in planted.encodings(item.token):
            assert encoded not in data, f"{d.kind} of {item.name} carries a marker from {item.containers}"
        version = VERSION_TAGS.search(data)
        assert version is None, f"{d.kind} of {item.name} names a tool version: {data[version.start():version.start() + 40]!r}"
        assert d.tool_version and re.search(r"\d", d.tool_version), "the version is recorded in the custody row"
        if d.kind == "proxy":
            path = tmp_path / "proxy.mp4"
            path.write_bytes(data)
            probe = json.loads(subprocess.run(
                ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
                 "-show_chapters", str(path)], capture_output=True, check=True, timeout=60).stdout)
            assert [s["codec_type"] for s in probe["streams"]] in (["video"], ["video", "audio"]), probe["streams"]
            assert probe["chapters"] == []
            tags = set((probe["format"].get("tags") or {}).keys())
            assert tags <= {"major_brand", "minor_version", "compatible_brands"}, tags
        kinds.append(d.kind)
    events = env.events(item_id, "item.derivative")
    assert events and all(re.search(r"\d", e["tool_version"]) for e in events)
    return sorted(kinds)


@pytest.mark.parametrize("fmt", sorted(planted.IMAGE_BUILDERS))
def test_image_derivatives_carry_no_metadata_of_the_original(env: Env, fmt: str, tmp_path: Path) -> None:
    item = planted.IMAGE_BUILDERS[fmt]()
    assert _check(env, item, tmp_path) == ["preview", "thumbnail"]


@pytest.mark.parametrize("fmt", sorted(planted.VIDEO_BUILDERS))
def test_video_derivatives_carry_no_metadata_streams_or_chapters_of_the_original(
    env: Env, fmt: str, tmp_path: Path
) -> None:
    work = tmp_path / "make"
    work.mkdir()
    item = planted.VIDEO_BUILDERS[fmt](work)
    assert _check(env, item, tmp_path) == ["poster", "proxy", "thumbnail"]
