"""Images: the only module that imports Pillow (and pillow-heif).

Hostile input (SECURITY_CHECKLIST BF-05..BF-09):
* ``Image.open(..., formats=ALLOWED_FORMATS)``: Pillow never tries a parser that is not
  on the allowlist (no EPS/Ghostscript, FITS, ICO...), whatever the magic bytes say.
* ``DecompressionBombWarning`` is an error inside each call (``warnings.catch_warnings``,
  not a process-wide filter), and ``Image.MAX_IMAGE_PIXELS`` is left at its default:
  a pixel flood raises before the pixels are allocated.
* ``ImageFile.LOAD_TRUNCATED_IMAGES`` stays False: a truncated image is an error.
* Derivatives are re-encoded pixels with no metadata copied (no EXIF, no XMP, no ICC
  payload, no comment segments), so a polyglot's payload does not survive (BF-06).
* EXIF values are untrusted text: length-capped here, escaped wherever shown.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pillow_heif
from PIL import ExifTags, Image, ImageFile, ImageOps

# Register the HEIF opener once; harmless to repeat.
pillow_heif.register_heif_opener()

# MIME type (from storage.sniff) -> the one Pillow format allowed to parse it.
FORMAT_FOR_MIME: dict[str, str] = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/tiff": "TIFF",
    "image/heic": "HEIF",
    "image/heif": "HEIF",
}
ALLOWED_FORMATS: tuple[str, ...] = tuple(sorted(set(FORMAT_FOR_MIME.values())))
THUMBNAIL_PX = 320
PREVIEW_PX = 2048
MAX_TEXT = 200
MAX_FRAMES = 1000  # animated GIF/WebP with more frames than this are refused


class ImageRejected(Exception):
    """The bytes are not a decodable image of the allowed format (or a pixel bomb)."""

    code = "ERR_IMAGE_REJECTED"


@dataclass(frozen=True)
class ImageDerivative:
    kind: str  # "thumbnail" | "preview"
    data: bytes
    mime_type: str
    width: int
    height: int
    argv: list[str]  # a description of the operations, for reproduction


def tool_version() -> str:
    return f"Pillow {importlib_metadata.version('pillow')}; pillow-heif {importlib_metadata.version('pillow-heif')}"


@contextmanager
def _guarded() -> Iterator[None]:
    # Threat: pixel floods (BF-07). Local to this call: a process-wide filter would
    # change other code's warnings, and tests run with warnings as errors anyway.
    assert Image.MAX_IMAGE_PIXELS is not None
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _open(path: Path, mime: str) -> Image.Image:
    fmt = FORMAT_FOR_MIME.get(mime)
    if fmt is None:
        raise ImageRejected(f"{mime} is not an allowed image type")
    try:
        return Image.open(path, formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"pixel limit exceeded: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:  # UnidentifiedImageError is an OSError
        raise ImageRejected(f"not a decodable {fmt} image: {str(exc)[:200]}") from None


def check_decodes(path: Path, mime: str) -> dict[str, Any]:
    """Open with the allowed parser and decode the pixels. Returns basic facts
    (format, width, height, frames); raises ``ImageRejected``."""
    with _guarded():
        im = _open(path, mime)
        try:
            frames = int(getattr(im, "n_frames", 1) or 1)
            if frames > MAX_FRAMES:
                raise ImageRejected(f"{frames} frames is over the {MAX_FRAMES}-frame limit")
            width, height = im.width, im.height
            if im.format == "JPEG":
                # DCT scaling: every entropy-coded byte is still decoded (a corrupt or
                # truncated scan still fails) but the IDCT runs at 1/8 size.
                im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            im.load()
            return {"format": im.format, "width": width, "height": height, "frames": frames, "mode": im.mode}
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(f"pixel limit exceeded: {exc}") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageRejected(f"not a decodable {im.format} image: {str(exc)[:200]}") from None
        finally:
            im.close()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\x00", "").strip()
    return text[:MAX_TEXT] or None


def _gps_degrees(value: Any, ref: Any) -> float | None:
    try:
        d, m, s = (float(v) for v in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    degrees = d + m / 60 + s / 3600
    if _text(ref) in ("S", "W"):
        degrees = -degrees
    if not -180 <= degrees <= 180:
        return None
    return round(degrees, 7)


def extract_metadata(path: Path, mime: str) -> dict[str, Any]:
    """Camera, capture time, GPS and dimensions: untrusted data, length-capped."""
    with _guarded():
        im = _open(path, mime)
        try:
            exif = im.getexif()
            base = {k: exif.get(k) for k in (0x010F, 0x0110, 0x0131, 0x0112, 0x0132)}
            exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
            gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
            result: dict[str, Any] = {
                "kind": "image",
                "format": im.format,
                "width": im.width,
                "height": im.height,
                "camera_make": _text(base[0x010F]),
                "camera_model": _text(base[0x0110]),
                "software": _text(base[0x0131]),
                "orientation": int(base[0x0112]) if isinstance(base[0x0112], int) else None,
                "captured_at": _text(exif_ifd.get(0x9003) or base[0x0132]),
                "captured_offset": _text(exif_ifd.get(0x9011)),
            }
            original_orientation = im.info.get("original_orientation")
            if isinstance(original_orientation, int):
                result["orientation"] = original_orientation
            if gps:
                lat = _gps_degrees(gps.get(2), gps.get(1))
                lon = _gps_degrees(gps.get(4), gps.get(3))
                if lat is not None and lon is not None and -90 <= lat <= 90:
                    result["gps"] = {"latitude": lat, "longitude": lon}
                    altitude = gps.get(6)
                    try:
                        result["gps"]["altitude_m"] = round(float(altitude), 2) if altitude is not None else None
                    except (TypeError, ValueError, ZeroDivisionError):
                        pass
            return {k: v for k, v in result.items() if v is not None}
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(f"pixel limit exceeded: {exc}") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageRejected(f"metadata unreadable: {str(exc)[:200]}") from None
        finally:
            im.close()


def make_derivatives(path: Path, mime: str) -> list[ImageDerivative]:
    """A thumbnail (<= 320 px) and a preview (<= 2048 px): orientation applied, first
    frame only, metadata stripped, JPEG (WebP when the image has transparency)."""
    with _guarded():
        im = _open(path, mime)
        try:
            im.seek(0)
            oriented = ImageOps.exif_transpose(im)
            has_alpha = oriented.mode in ("RGBA", "LA", "PA") or (
                oriented.mode == "P" and "transparency" in oriented.info
            )
            base = oriented.convert("RGBA" if has_alpha else "RGB")
            out: list[ImageDerivative] = []
            source = base
            for kind, box in (("preview", PREVIEW_PX), ("thumbnail", THUMBNAIL_PX)):
                # The thumbnail is made from the preview: same result, a fraction of the work.
                copy = source.copy()
                copy.thumbnail((box, box), Image.Resampling.LANCZOS)
                source = copy
                buf = io.BytesIO()
                if has_alpha:
                    copy.save(buf, format="WEBP", quality=85, method=4)
                    mime_out, save = "image/webp", "WEBP quality=85 method=4"
                else:
                    copy.save(buf, format="JPEG", quality=85)
                    mime_out, save = "image/jpeg", "JPEG quality=85"
                resizes = [f"thumbnail(({b},{b}), LANCZOS)" for b in (PREVIEW_PX, THUMBNAIL_PX) if b >= box]
                argv = [
                    f"Image.open(formats=[{FORMAT_FOR_MIME[mime]}])",
                    "ImageOps.exif_transpose",
                    f"convert({base.mode})",
                    *resizes,
                    f"save({save}, no metadata)",
                ]
                out.append(ImageDerivative(kind, buf.getvalue(), mime_out, copy.width, copy.height, argv))
            return out
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(f"pixel limit exceeded: {exc}") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageRejected(f"could not render: {str(exc)[:200]}") from None
        finally:
            im.close()


def frame_to_jpeg(data: bytes, box: int) -> tuple[bytes, int, int]:
    """Re-encode a JPEG frame (an ffmpeg poster) to a thumbnail of at most ``box`` px."""
    with _guarded():
        try:
            im = Image.open(io.BytesIO(data), formats=["JPEG"])
            im.thumbnail((box, box), Image.Resampling.LANCZOS)
            rgb = im.convert("RGB")
            buf = io.BytesIO()
            rgb.save(buf, format="JPEG", quality=85)
            return buf.getvalue(), rgb.width, rgb.height
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageRejected(f"poster unreadable: {str(exc)[:200]}") from None
