"""The custody timeline in plain words (i15 item 5): one sentence per event for the item
page, with the raw event (action and detail) folded away beside it. The README's custody
events table is the reference; an action without words here is shown by its name."""

from __future__ import annotations

from typing import Any

from reviewer_ui import display
from storage.models import CustodyEvent

WORDS: dict[str, str] = {
    "item.received": "The file arrived complete and became evidence",
    "item.client_hash": "The citizen's device sent its own SHA-256 of the file",
    "item.verified": "The worker re-computed the SHA-256 of the stored original",
    "item.sniffed": "The file type was identified from its content",
    "item.scanning": "Checks started",
    "item.clean": "The virus scan found nothing",
    "item.infected": "The virus scan found malware",
    "item.unscannable": "The file could not be scanned",
    "item.rejected": "Refused: not an allowed file type",
    "item.integrity_alarm": "INTEGRITY ALARM: the stored original no longer matches its hash",
    "item.processing": "Viewing copies are being made",
    "item.metadata": "Metadata (EXIF, GPS, ffprobe) was read",
    "item.derivative": "A viewing copy was made",
    "item.ready": "Ready to view",
    "item.failed": "Making viewing copies failed",
    "item.purged": "The bytes were destroyed under retention or a legal order",
    "item.quarantined": "The infected original was moved to quarantine",
    "item.viewed": "Opened this page",
    "media.stream": "Played the video",
    "item.original_downloaded": "Downloaded the original",
    "item.still_requested": "Asked for a still of the video",
    "item.still_saved": "A still of the video was saved",
    "item.triage": "Triage decision",
    "note.added": "Added a note",
    "note.edited": "Replaced a note with a new version",
    "tag.added": "Added a tag",
    "tag.removed": "Removed a tag",
    "share.created": "Shared with a partner",
    "share.revoked": "Ended a share",
    "access.denied": "Was refused access",
    "export.created": "Included in an export bundle",
}


def _seconds(value: Any) -> str:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return str(value)
    return display.clock(seconds)


def describe(event: CustodyEvent) -> str:
    """One sentence: what happened, with the detail a reader needs first."""
    words = WORDS.get(event.action, event.action)
    d: dict[str, Any] = event.detail or {}
    if event.action == "item.triage":
        return f"{words}: {d.get('to', '?')} (was {d.get('from', '?')}). Reason: {d.get('reason', '')}"
    if event.action in ("tag.added", "tag.removed"):
        return f"{words}: {d.get('tag', '')}"
    if event.action == "item.original_downloaded":
        return f"{words}. Reason: {d.get('reason', '')}"
    if event.action in ("item.derivative", "item.still_saved", "item.still_requested"):
        at = f" at {_seconds(d['at_seconds'])}" if "at_seconds" in d else ""
        kind = d.get("kind", "")
        return f"{words}: {kind}{at}" + (f", {d['width']} x {d['height']} px" if d.get("width") else "")
    if event.action == "media.stream" and d.get("kind") not in (None, "proxy"):
        return f"Fetched the {d.get('kind')} on its own"
    if event.action == "access.denied":
        return f"{words} ({d.get('reason', '')})"
    return words
