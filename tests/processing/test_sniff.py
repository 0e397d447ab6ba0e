"""The magic-byte sniffer (storage.sniff) on real generated media, and what it refuses."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from processing.clamd_manager import EICAR
from storage.sniff import ALLOWED_TYPES, sniff_type
from tests.fixtures.media import Media, hls_playlist, pixel_flood_png


@pytest.mark.parametrize(
    ("name", "mime"),
    [
        ("jpeg_gps", "image/jpeg"),
        ("heic", "image/heic"),
        ("png", "image/png"),
        ("rotated_mov", "video/quicktime"),
        ("hevc_mp4", "video/mp4"),
        ("dashcam_ts", "video/mp2t"),
        ("truncated_mp4", "video/mp4"),  # magic is fine: the decode check refuses it
        ("eicar_jpeg", "image/jpeg"),  # magic is fine: the scan refuses it
        ("html_jpg", None),
    ],
)
def test_sniffs_generated_media(media: Media, name: str, mime: str | None) -> None:
    assert sniff_type(media.read(name)[:4096]) == mime


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (b"GIF89a" + b"\0" * 20, "image/gif"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp"),
        (b"RIFF\0\0\0\0AVI LIST", "video/x-msvideo"),
        (b"II*\0\x08\0\0\0", "image/tiff"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video/webm"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska", "video/x-matroska"),
        (b"\0\0\0\x18ftyp3gp5\0\0\0\0", "video/3gpp"),
        (b"\0\0\0\x18ftypavif\0\0\0\0", None),  # AVIF is not on the allowlist
        (b"%PDF-1.7\n", None),
        (b"<svg xmlns='http://www.w3.org/2000/svg'><script/></svg>", None),
        (b"PK\x03\x04", None),
        (b"MZ\x90\0", None),
        (b"", None),
        (EICAR, None),
        (pixel_flood_png(), "image/png"),
    ],
)
def test_sniffs_signatures(data: bytes, mime: str | None) -> None:
    assert sniff_type(data) == mime
    assert mime is None or mime in ALLOWED_TYPES


def test_playlist_is_not_a_video() -> None:
    assert sniff_type(hls_playlist("http://127.0.0.1:1/x", Path("/etc/passwd"))) is None


def test_storage_sniff_imports_nothing_heavy() -> None:
    # The upload API calls it on every stream: no Pillow, no ffmpeg, no processing.
    tree = ast.parse((Path(__file__).resolve().parents[2] / "storage" / "sniff.py").read_text())
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__"}
