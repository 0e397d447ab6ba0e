"""Images: the only module that imports Pillow (and pillow-heif).

Hostile input (SECURITY_CHECKLIST BF-05..BF-09):
* ``Image.open(..., formats=ALLOWED_FORMATS)``: Pillow never tries a parser that is not
  on the allowlist (no EPS/Ghostscript, FITS, ICO...), whatever the magic bytes say.
* ``DecompressionBombWarning`` is an error inside each call (``warnings.catch_warnings``,
  not a process-wide filter), and ``Image.MAX_IMAGE_PIXELS`` is left at its default:
  a pixel flood raises before the pixels are allocated.
* ``ImageFile.LOAD_TRUNCATED_IMAGES`` stays False: a truncated image is an error.
* Derivatives are re-encoded pixels and nothing else (BF-06, BF-18): ``info`` is
  emptied before every save (Pillow's JPEG writer falls back to ``im.info["comment"]``,
  and ``copy()``/``convert()`` keep ``info``) and every metadata argument is passed
  explicitly empty: no EXIF, XMP, IPTC, ICC profile (its text tags could carry a payload;
  the pixels are converted to sRGB instead), comment, PNG text or GIF extension of the
  original's reaches a copy, so neither a polyglot's payload nor a home address does.
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
from PIL import ExifTags, Image, ImageCms, ImageFile, ImageOps

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
# The full-resolution copy (i15 item 5: a number plate read at 100% without the original):
# made only when the picture is larger than the preview, at the original's pixel size,
# metadata stripped like every copy. WebP (for transparency) cannot exceed 16383 px a side.
FULL_JPEG_QUALITY = 92
WEBP_MAX_SIDE = 16383
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


# Every writer's metadata argument, explicitly empty: nothing falls back to the source.
_NO_METADATA: dict[str, dict[str, Any]] = {
    "JPEG": {"exif": b"", "xmp": b"", "icc_profile": b"", "comment": b""},
    "WEBP": {"exif": b"", "xmp": b"", "icc_profile": b""},
}
FULL_KIND = "full"


def save_bare(im: Image.Image, fmt: str, **options: Any) -> bytes:
    """Encode ``im``'s pixels as ``fmt`` with no metadata at all (BF-06, BF-18).

    Threat: text from the original (a ``<script>`` in a JPEG comment, a home address in
    XMP) riding into derivatives that reviewers and partners open. ``info`` is emptied
    because Pillow's writers read it as a fallback; the keyword arguments make the
    emptiness explicit for the writers that read ``encoderinfo``."""
    im.info = {}
    buf = io.BytesIO()
    im.save(buf, format=fmt, **options, **_NO_METADATA[fmt])
    return buf.getvalue()


def _to_srgb(im: Image.Image, mode: str) -> Image.Image:
    """Pixels in ``mode`` (RGB/RGBA), colour-managed to sRGB when the original carries an
    ICC profile, so the copy can drop the profile (and any text in it) and still show the
    right colours. A profile lcms cannot use is ignored (the pixels are kept as they are)."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            if im.mode not in ("RGB", "RGBA", "CMYK", "L"):
                im = im.convert("RGBA" if mode == "RGBA" else "RGB")
            converted = ImageCms.profileToProfile(im, source, srgb, outputMode=mode)
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            pass
    return im.convert(mode)


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


def _full(base: Image.Image, has_alpha: bool, mime: str) -> ImageDerivative | None:
    """The oriented, sRGB pixels at their own size, no metadata (BF-06, BF-18): for
    reading detail at 100% in the viewer. None when the preview already holds every
    pixel, or a transparent image is too large for WebP."""
    if max(base.size) <= PREVIEW_PX:
        return None
    if has_alpha:
        if max(base.size) > WEBP_MAX_SIDE:
            return None
        data = save_bare(base.copy(), "WEBP", quality=FULL_JPEG_QUALITY, method=4)
        mime_out, save = "image/webp", f"WEBP quality={FULL_JPEG_QUALITY} method=4"
    else:
        data = save_bare(base.copy(), "JPEG", quality=FULL_JPEG_QUALITY)
        mime_out, save = "image/jpeg", f"JPEG quality={FULL_JPEG_QUALITY}"
    argv = [
        f"Image.open(formats=[{FORMAT_FOR_MIME[mime]}])",
        "ImageOps.exif_transpose",
        f"convert({base.mode}, ICC profile -> sRGB)",
        f"save({save}, no metadata)",
    ]
    return ImageDerivative(FULL_KIND, data, mime_out, base.width, base.height, argv)


def make_derivatives(path: Path, mime: str) -> list[ImageDerivative]:
    """A thumbnail (<= 320 px), a preview (<= 2048 px) and, for a larger picture, a
    full-resolution copy: orientation applied, first frame only, metadata stripped, JPEG
    (WebP when the image has transparency)."""
    with _guarded():
        im = _open(path, mime)
        try:
            im.seek(0)
            oriented = ImageOps.exif_transpose(im)
            has_alpha = oriented.mode in ("RGBA", "LA", "PA") or (
                oriented.mode == "P" and "transparency" in oriented.info
            )
            base = _to_srgb(oriented, "RGBA" if has_alpha else "RGB")
            out: list[ImageDerivative] = []
            whole = _full(base, has_alpha, mime)
            if whole is not None:
                out.append(whole)
            source = base
            for kind, box in (("preview", PREVIEW_PX), ("thumbnail", THUMBNAIL_PX)):
                # The thumbnail is made from the preview: same result, a fraction of the work.
                copy = source.copy()
                copy.thumbnail((box, box), Image.Resampling.LANCZOS)
                source = copy
                if has_alpha:
                    data = save_bare(copy, "WEBP", quality=85, method=4)
                    mime_out, save = "image/webp", "WEBP quality=85 method=4"
                else:
                    data = save_bare(copy, "JPEG", quality=85)
                    mime_out, save = "image/jpeg", "JPEG quality=85"
                resizes = [f"thumbnail(({b},{b}), LANCZOS)" for b in (PREVIEW_PX, THUMBNAIL_PX) if b >= box]
                argv = [
                    f"Image.open(formats=[{FORMAT_FOR_MIME[mime]}])",
                    "ImageOps.exif_transpose",
                    f"convert({base.mode}, ICC profile -> sRGB)",
                    *resizes,
                    f"save({save}, no metadata)",
                ]
                out.append(ImageDerivative(kind, data, mime_out, copy.width, copy.height, argv))
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
            # The frame's own JPEG comment (ffmpeg's encoder tag) does not pass either.
            return save_bare(rgb, "JPEG", quality=85), rgb.width, rgb.height
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageRejected(f"poster unreadable: {str(exc)[:200]}") from None
