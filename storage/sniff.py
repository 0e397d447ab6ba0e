"""Magic-byte sniffing: what a file *says* it is, from its first bytes only.

``sniff_type(first_bytes)`` is a pure function with no third-party imports, so that the
upload API can call it on the first bytes of every stream (refuse early) and the worker
can call it again on the stored original. It answers a MIME type from the allowlist, or
``None``. It never looks at a filename, an extension or a client's Content-Type: those
are the attacker's words (SECURITY_CHECKLIST BF-05).

A match here is necessary, not sufficient: the worker then decodes the file with the
parser allowed for that type (Pillow with a format allowlist, ffprobe with a forced
demuxer) before anything else trusts it (``processing.sniff``).

Give it at least ``SNIFF_BYTES`` bytes when the file is that long; MPEG-TS needs three
188-byte packets to be recognised.
"""

from __future__ import annotations

SNIFF_BYTES = 4096

IMAGE_TYPES: frozenset[str] = frozenset(
    {"image/jpeg", "image/png", "image/heic", "image/heif", "image/webp", "image/gif", "image/tiff"}
)
VIDEO_TYPES: frozenset[str] = frozenset(
    {
        "video/mp4",
        "video/quicktime",
        "video/3gpp",
        "video/x-msvideo",
        "video/x-matroska",
        "video/webm",
        "video/mp2t",
    }
)
ALLOWED_TYPES: frozenset[str] = IMAGE_TYPES | VIDEO_TYPES

# ISO base media file format (MP4, MOV, 3GP, HEIF) brands, from the `ftyp` box.
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1", b"mif2"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})  # not on the allowlist
_QT_BRANDS = frozenset({b"qt  "})
# Boxes a brand-less (pre-ftyp) QuickTime file starts with.
_QT_LEGACY_BOXES = frozenset({b"moov", b"mdat", b"wide"})
_TS_PACKET = 188


def is_image(mime: str | None) -> bool:
    return mime in IMAGE_TYPES


def is_video(mime: str | None) -> bool:
    return mime in VIDEO_TYPES


def _iso_bmff(data: bytes) -> str | None:
    if len(data) < 12 or data[4:8] != b"ftyp":
        if len(data) >= 8 and data[4:8] in _QT_LEGACY_BOXES:
            return "video/quicktime"
        return None
    box_size = int.from_bytes(data[0:4], "big")
    major = data[8:12]
    # Compatible brands follow the minor version, up to the end of the ftyp box.
    end = min(len(data), box_size if 16 <= box_size <= 4096 else 16)
    compatible = {data[i : i + 4] for i in range(16, end - 3, 4)}
    brands = {major} | compatible
    if major in _AVIF_BRANDS:
        return None
    if major in _HEIC_BRANDS:
        return "image/heic"
    if major in _HEIF_BRANDS:
        return "image/heic" if brands & _HEIC_BRANDS else "image/heif"
    if major in _QT_BRANDS:
        return "video/quicktime"
    if major.startswith(b"3g"):
        return "video/3gpp"
    # isom, iso2..iso9, mp41, mp42, avc1, M4V , mmp4, dash, MSNV, ...: plain MP4 family.
    return "video/mp4"


def _mpeg_ts(data: bytes) -> bool:
    # Plain TS (188-byte packets) or M2TS/AVCHD (a 4-byte timestamp before each packet).
    for offset, stride in ((0, _TS_PACKET), (4, _TS_PACKET + 4)):
        if len(data) >= offset + 2 * stride + 1 and all(
            data[offset + i * stride] == 0x47 for i in range(3)
        ):
            return True
    return False


def sniff_type(first_bytes: bytes) -> str | None:
    """The allowlisted MIME type these leading bytes announce, or ``None``."""
    data = bytes(first_bytes[:SNIFF_BYTES])
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data.startswith(b"RIFF") and len(data) >= 12:
        if data[8:12] == b"WEBP":
            return "image/webp"
        if data[8:12] == b"AVI ":
            return "video/x-msvideo"
        return None
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        # EBML: the DocType element says webm or matroska.
        return "video/webm" if b"webm" in data[:64] else "video/x-matroska"
    mime = _iso_bmff(data)
    if mime is not None:
        return mime
    if _mpeg_ts(data):
        return "video/mp2t"
    return None
