"""Share receipts (issue 15 item 3): a partner acknowledges receipt of a share, once, and
only of a live share that reaches them; the sharer sees the acknowledgement and what the
partner viewed or downloaded, and when."""

from __future__ import annotations

import re

from sqlmodel import col, select

from storage.models import Share
from tests.fixtures.casework import Casework, SignedIn

# A time as staff pages print it: the force's zone, the UTC instant on hover (i15 item 5).
WHEN = r'<time datetime="[0-9TZ:-]+" title="[^"]+ UTC">\d{1,2} \w{3} \d{4} \d\d:\d\d (GMT|BST)</time>'


def _shared(casework: Casework, **extra: str) -> tuple[SignedIn, SignedIn, str, str]:
    """An officer shares a ready item with the CPS (downloads allowed).
    -> (officer, partner, item id, share id)"""
    officer = casework.client(casework.user("officer", email="pc.sharer@force.test"))
    partner_user = casework.user("partner", email="lawyer@cps.test", org="CPS North")
    report = casework.report(officer.user)
    item = casework.item(report).item
    r = officer.post(f"/items/{item.id}/shares", {"partner": f"org:{partner_user.org_id}", "days": "10",
                                                   "allow_download": "yes", **extra})
    assert r.status_code == 303, r.text
    with casework.db.read() as s:
        share = s.exec(select(Share).where(col(Share.item_id) == item.id)).one()
    return officer, casework.client(partner_user), item.id, share.id


def _receipt_cell(page: str) -> str:
    row = re.search(r"<tbody>(.*?)</tbody>", page.split('id="shares"', 1)[1], re.S)
    assert row, "no share listing"
    return row.group(1)


def test_a_partner_acknowledges_receipt_once_and_the_sharer_sees_when(casework: Casework) -> None:
    officer, partner, item_id, share_id = _shared(casework)
    assert "not acknowledged" in _receipt_cell(officer.get(f"/items/{item_id}").text)

    page = partner.get(f"/items/{item_id}").text
    assert f'action="/shares/{share_id}/acknowledge"' in page
    r = partner.post(f"/shares/{share_id}/acknowledge", {"item": item_id})
    assert r.status_code == 303 and r.headers["location"] == f"/items/{item_id}#receipt"
    events = casework.events("share.acknowledged")
    assert len(events) == 1
    assert events[0].actor == "lawyer@cps.test" and events[0].item_id == item_id
    assert events[0].detail == {"share_id": share_id, "scope": "item"}
    page = partner.get(f"/items/{item_id}").text
    assert "receipt acknowledged" in page and f'/shares/{share_id}/acknowledge"' not in page
    # A second press records nothing more.
    assert partner.post(f"/shares/{share_id}/acknowledge", {"item": item_id}).status_code == 303
    assert len(casework.events("share.acknowledged")) == 1

    cell = _receipt_cell(officer.get(f"/items/{item_id}").text)
    assert re.search(r"acknowledged at " + WHEN + r" by lawyer@cps.test", cell)


def test_the_sharer_sees_what_the_partner_viewed_and_downloaded(casework: Casework) -> None:
    officer, partner, item_id, _share_id = _shared(casework)
    cell = _receipt_cell(officer.get(f"/items/{item_id}").text)
    assert "nothing viewed yet" in cell
    assert partner.get(f"/items/{item_id}").status_code == 200
    download = partner.post(f"/items/{item_id}/original", {"reason": "Case file for the hearing"})
    assert download.status_code == 200
    cell = _receipt_cell(officer.get(f"/items/{item_id}").text)
    assert re.search(r"viewed " + WHEN + r" by lawyer@cps.test", cell)
    assert re.search(r"downloaded the original " + WHEN + r" by lawyer@cps.test", cell)
    # The officer's own views are not the partner's activity.
    assert "pc.sharer@force.test" not in cell


def test_only_a_partner_the_live_share_reaches_can_acknowledge_it(casework: Casework) -> None:
    officer, partner, item_id, share_id = _shared(casework)
    colleague = casework.client(casework.user("partner", email="clerk@cps.test", org="CPS North"))
    outsider = casework.client(casework.user("partner", email="someone@council.test", org="County Council"))
    denied = len(casework.events("access.denied"))
    for who in (outsider, officer, casework.client(casework.user("auditor"))):
        assert who.post(f"/shares/{share_id}/acknowledge", {"item": item_id}).status_code == 404
    assert outsider.post("/shares/" + "0" * 32 + "/acknowledge").status_code == 404
    assert len(casework.events("access.denied")) == denied + 4
    assert casework.events("share.acknowledged") == []
    # Anyone of the organisation it was shared with may acknowledge it...
    assert colleague.post(f"/shares/{share_id}/acknowledge", {"item": item_id}).status_code == 303
    # ...and a revoked share can no longer be acknowledged (nor seen).
    assert officer.post(f"/shares/{share_id}/revoke", {"confirmed": "yes"}).status_code == 303
    assert partner.post(f"/shares/{share_id}/acknowledge", {"item": item_id}).status_code == 404
    assert [e.actor for e in casework.events("share.acknowledged")] == ["clerk@cps.test"]
