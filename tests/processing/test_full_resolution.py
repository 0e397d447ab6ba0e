"""i15 item 5: a photo larger than the preview gets a full-resolution copy (so a number
plate can be read at 100% without the original), with nothing of the original's metadata
(BF-06, BF-18) and its operations recorded; a small photo needs none."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from processing import images

MARKER = b"PLANTED-MARKER-7f3a"


def _big_jpeg(path: Path, size: tuple[int, int]) -> None:
    im = Image.new("RGB", size, (30, 60, 90))
    for x in range(0, size[0], 7):  # fine detail that a 2048 px preview loses
        im.putpixel((x, size[1] // 2), (255, 255, 0))
    exif = Image.Exif()
    exif[0x010F] = MARKER.decode()  # Make
    exif[0x0112] = 6  # Orientation: rotate 90 degrees
    im.save(path, "JPEG", quality=95, exif=exif.tobytes(), comment=MARKER)


def test_a_large_photo_gets_a_full_resolution_copy_without_its_metadata(tmp_path: Path) -> None:
    path = tmp_path / "input"
    _big_jpeg(path, (3000, 2000))
    made = {d.kind: d for d in images.make_derivatives(path, "image/jpeg")}
    assert set(made) == {"full", "preview", "thumbnail"}
    full = made["full"]
    # Orientation applied, every pixel kept: 2000 x 3000 after the rotation.
    assert (full.width, full.height) == (2000, 3000) and full.mime_type == "image/jpeg"
    assert max(made["preview"].width, made["preview"].height) == images.PREVIEW_PX
    im = Image.open(io.BytesIO(full.data))
    assert im.size == (2000, 3000) and not im.getexif() and "comment" not in im.info
    assert MARKER not in full.data and MARKER.decode("ascii").encode("utf-16-le") not in full.data
    assert full.argv[0].startswith("Image.open") and any("no metadata" in step for step in full.argv)


def test_a_photo_within_the_preview_size_has_no_second_copy(tmp_path: Path) -> None:
    path = tmp_path / "input"
    _big_jpeg(path, (1600, 1200))
    assert {d.kind for d in images.make_derivatives(path, "image/jpeg")} == {"preview", "thumbnail"}
