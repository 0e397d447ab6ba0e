"""The continuity statement of an export bundle (issue 13): passes axe-core and prints
on A4 in Chromium without cutting off hashes or names."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import BrowserContext

from storage import export
from tests.browser.conftest import axe_violations


def _manifest(n_items: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    items, events = [], []
    for i in range(n_items):
        item_id = f"{i:032x}"
        items.append({
            "id": item_id, "state": "ready", "triage": "accepted", "received_at": "2026-12-01T10:00:00.000000Z",
            "size": 123456, "sha256_at_ingest": "a" * 64, "sha256_at_verification": "a" * 64,
            "original_filename": f"<img src=x onerror=alert(1)> dashcam {i} " + "very-long-name-" * 8 + ".mp4",
            "file": f"originals/{item_id}_dashcam.mp4", "not_included_because": None,
            "scan": {"verdict": "clean", "engine": "ClamAV", "signature_version": "ClamAV 1.4.1/27480"},
            "derivatives": [{"kind": "proxy", "tool": "ffmpeg", "tool_version": "6.1.1", "input_sha256": "a" * 64,
                             "sha256": "b" * 64}],
        })
        for seq, action in enumerate(("item.received", "item.verified", "item.derivative"), start=3 * i + 1):
            events.append({"seq": seq, "at": "2026-12-01T10:00:01.000000Z", "actor": "officer@force.example",
                           "action": action, "item_id": item_id})
    manifest = {"report": {"reference": "CRIME/2026/0007", "kind": "crime", "title": "Burglary <b>x</b>"},
                "created_at": "2026-12-03T08:00:00.000000Z", "exported_by": "officer@force.example",
                "reason": "CPS file for trial", "items": items,
                "custody": {"ledger_head": {"seq": 3 * n_items, "hash": "c" * 64}}}
    return manifest, events


def test_continuity_statement_is_accessible_and_prints_on_a4(context: BrowserContext) -> None:
    manifest, events = _manifest(6)
    page = context.new_page()
    page.set_content(export.continuity_html(manifest, events))
    assert page.evaluate("() => document.querySelectorAll('img, script').length") == 0  # escaped, not markup
    assert axe_violations(page) == []
    page.emulate_media(media="print")
    page.set_viewport_size({"width": 718, "height": 1000})  # A4 less 2 x 18 mm margins, in CSS pixels
    text = page.inner_text("body")
    assert "a" * 64 in text and "Exhibit 6" in text and "<img src=x" in text
    assert page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    pdf = page.pdf(format="A4", print_background=False)
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    # An opening page and at most one page per exhibit (each kept whole), never a runaway.
    assert 2 <= pages <= 1 + 6, pages
