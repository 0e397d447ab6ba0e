"""The retention section of the report page and /admin/retention (issue 14 item 5) in real
Chromium, with holds and due evidence on them: no sideways scrolling at 320 CSS px or at
200% zoom, and axe-core finds no violation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import axe_violations
from tests.browser.test_staff_reflow import SIZES, Staff, _open, _overflow, sized, staff  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]
_ = SIZES

HOLD_REASON = ("Preserve for the civil claim brought by the driver of the second vehicle, reference "
               "CLAIM/2026/000123-HIGH-COURT-QUEENS-BENCH-DIVISION-WITH-A-LONG-NAME")


@pytest.mark.parametrize("name", ["report page", "admin retention"])
def test_retention_pages_reflow_and_axe_is_clean(sized: Any, staff: Staff, name: str) -> None:  # noqa: F811
    cw = staff.cw
    report_url = staff.urls["report page"]
    report_id = report_url.rsplit("/", 1)[1]
    item_id = staff.urls["image item"].rsplit("/", 1)[1]
    admin = cw.client(cw.user("admin"))
    assert admin.post(f"/reports/{report_id}/holds", {"reason": HOLD_REASON}).status_code == 303
    assert admin.post(f"/reports/{report_id}/holds", {"item_id": item_id, "reason": "inquest"}).status_code == 303
    staff.urls["admin retention"] = f"{staff.live.base_url}/admin/retention?days=365"

    page = _open(sized, staff, name)
    assert "CLAIM/2026/000123" in page.content()
    if name == "admin retention":
        assert item_id in page.content()  # the declined image falls due within the year
    else:
        assert page.locator("#retention").count() == 1
    size = _overflow(page)
    assert size["scrollWidth"] <= size["innerWidth"], (name, size)
    violations = axe_violations(page)
    assert violations == [], (name, violations)
