"""Type decision: magic bytes (``storage.sniff``) and then a decode by the one parser
allowed for that type. Both must agree, or the item is rejected (SECURITY_CHECKLIST
BF-05, BF-08, BF-12). The filename and the client's Content-Type play no part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processing import images, video
from storage.sniff import SNIFF_BYTES, is_image, is_video, sniff_type


class Rejected(Exception):
    code = "ERR_TYPE_REJECTED"


@dataclass(frozen=True)
class Identified:
    mime: str
    tool: str
    tool_version: str
    argv: list[str]
    facts: dict[str, Any] = field(default_factory=dict)
    probe: dict[str, Any] | None = None  # ffprobe JSON for videos


def identify(workdir: Path, input_name: str = "input") -> Identified:
    """Decide the type of ``workdir/input``. Raises ``Rejected`` with the reason."""
    path = workdir / input_name
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    if not head:
        raise Rejected("empty file")
    mime = sniff_type(head)
    if mime is None:
        raise Rejected("not an allowed type: no known image or video signature")
    if is_image(mime):
        try:
            facts = images.check_decodes(path, mime)
        except images.ImageRejected as exc:
            raise Rejected(f"{mime}: {exc}") from None
        fmt = images.FORMAT_FOR_MIME[mime]
        return Identified(
            mime=mime, tool="pillow", tool_version=images.tool_version(),
            argv=[f"Image.open(formats=[{fmt}])", "load()"], facts=facts,
        )
    if is_video(mime):
        try:
            info, argv = video.probe(workdir, mime, input_name=input_name)
        except video.VideoRejected as exc:
            raise Rejected(f"{mime}: {exc}") from None
        return Identified(
            mime=mime, tool="ffprobe", tool_version=video.tool_version("ffprobe"), argv=argv,
            facts={"container": (info.get("format") or {}).get("format_name")}, probe=info,
        )
    raise Rejected(f"{mime} has no allowed parser")  # unreachable while the lists agree
