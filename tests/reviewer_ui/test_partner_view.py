"""A partner sees only what the share grants (i11 item 1; AC-04).

The test plants every internal field a staff page or JSON carries (a triage reason, a
tag, a note, an officer's e-mail and download reason, another partner's share, storage
keys inside a derivative's argv, GPS in the metadata, the citizen's contact details and
place) and fetches every response a partner can reach: none of them may appear. With a
share that grants contact details and location, those (and only those) appear."""

from __future__ import annotations

import re

from sqlmodel import col, select

from storage.links import create_link
from storage.models import Derivative, EvidenceItem, Share, Submission
from tests.fixtures.casework import Casework, SignedIn

GPS = "51.501234 PLANTED-GPS-LAT"
CONTACT = "07700 900123 PLANTED-CONTACT"
NAME = "Alex PLANTED-NAME"
PLACE = "14 Acacia Avenue PLANTED-PLACE"
STATEMENT = "The blue car ran the red light"
INTERNAL = {
    "triage reason": "PLANTED-TRIAGE-REASON stolen plates suspected",
    "tag": "planted-tag-suspect",
    "note": "PLANTED-NOTE the witness is a known informant",
    "download reason": "PLANTED-DOWNLOAD-REASON for the file review",
}


def _share(officer: SignedIn, item_id: str, grantee: str, **extra: str) -> None:
    r = officer.post(f"/items/{item_id}/shares", {"partner": grantee, "days": "10", "allow_download": "yes", **extra})
    assert r.status_code == 303, r.text


def _setup(casework: Casework) -> tuple[SignedIn, SignedIn, EvidenceItem, dict[str, str]]:
    officer_user = casework.user("officer")
    partner_user = casework.user("partner", org="CPS North")
    other_partner = casework.user("partner", org="County Council")
    report = casework.report(officer_user)
    seeded = casework.item(report, metadata={
        "exif": {"Make": "TestCam", "GPSInfo": {"GPSLatitude": GPS, "GPSLongitude": "-0.141 PLANTED-GPS-LON"}},
        "xmp": {"location": "PLANTED-XMP-LOCATION"},
    })
    item = seeded.item
    with casework.db.write() as session:
        issued = create_link(casework.db, session, report, public_url="http://testserver", expires_in_seconds=3600,
                             max_files=5, max_bytes=1 << 20, actor="test")
        sub = Submission(reference="PLANTEDRECEIPT1", link_id=issued.link.id, report_id=report.id,
                         description=STATEMENT, occurred_at="Monday 9am", location=PLACE,
                         contact_name=NAME, contact_details=CONTACT)
        session.add(sub)
        session.flush()
        row = session.get(EvidenceItem, item.id)
        assert row is not None
        row.submission_id = sub.id
        session.add(row)
        # How the worker records a copy: its argv names storage keys.
        derivs = list(session.exec(select(Derivative).where(col(Derivative.item_id) == item.id)))
        for d in derivs:
            d.argv = ["ffmpeg", "-i", item.blob_key, "-o", d.blob_key, "PLANTED-ARGV"]
            d.tool, d.tool_version = "pillow", "11.0"
            session.add(d)
    officer = casework.client(officer_user)
    assert officer.post(f"/items/{item.id}/triage", {"decision": "accepted",
                                                     "reason": INTERNAL["triage reason"]}).status_code == 303
    assert officer.post(f"/items/{item.id}/tags", {"tag": INTERNAL["tag"]}).status_code == 303
    assert officer.post(f"/items/{item.id}/notes", {"body": INTERNAL["note"]}).status_code == 303
    assert officer.post(f"/items/{item.id}/original", {"reason": INTERNAL["download reason"]}).status_code == 200
    _share(officer, item.id, f"user:{other_partner.id}")
    _share(officer, item.id, f"org:{partner_user.org_id}")
    with casework.db.read() as session:
        other_share = session.exec(select(Share).where(col(Share.partner_user_id) == other_partner.id)).one()
        keys = [item.blob_key, *(d.blob_key for d in session.exec(select(Derivative).where(
            col(Derivative.item_id) == item.id)))]
    secrets = dict(INTERNAL)
    secrets.update({"officer email": officer_user.email, "other partner's share": other_share.id,
                    "other partner": other_partner.email, "argv": "PLANTED-ARGV", "receipt": "PLANTEDRECEIPT1"})
    secrets.update({f"storage key {i}": key for i, key in enumerate(keys)})
    return officer, casework.client(partner_user), item, secrets


def _partner_responses(partner: SignedIn, item: EvidenceItem) -> dict[str, str]:
    """Every response a partner can fetch about this item, as text."""
    out: dict[str, str] = {}
    for path in ("/reports", f"/reports/{item.report_id}", f"/items/{item.id}", f"/items/{item.id}/progress.json",
                 f"/items/{item.id}/notes", f"/items/{item.id}/media/preview", f"/items/{item.id}/media/thumbnail"):
        r = partner.get(path)
        out[f"GET {path}"] = r.text if r.headers.get("content-type", "").startswith(("text", "application/json")) \
            else r.content.decode("latin-1")
        out[f"GET {path} headers"] = str(dict(r.headers))
    r = partner.post(f"/items/{item.id}/original", {"reason": "short"})  # the page again, with the error
    assert r.status_code == 400
    out["POST original (bad reason)"] = r.text
    return out


def test_a_partner_sees_no_internal_casework_anywhere(casework: Casework) -> None:
    _officer, partner, item, secrets = _setup(casework)
    responses = _partner_responses(partner, item)
    page = responses[f"GET /items/{item.id}"]
    # Nothing internal, in any response...
    for where, text in responses.items():
        for what, secret in secrets.items():
            assert secret not in text, f"{what} leaked in {where}"
        for what, secret in {"GPS": GPS, "XMP location": "PLANTED-XMP-LOCATION", "contact": CONTACT,
                             "name": NAME, "place": PLACE}.items():
            assert secret not in text, f"{what} shown without a grant in {where}"
    # ...and what the share grants is there.
    assert item.sha256 in page and STATEMENT in page and "clean" in page and "pillow 11.0" in page
    assert f"/items/{item.id}/media/preview" in page
    assert "Custody timeline" not in page and "Triage" not in page and "Tags" not in page and "Notes" not in page
    progress = partner.get(f"/items/{item.id}/progress.json").json()
    assert set(progress) == {"id", "state", "progress", "verdict", "terminal"}


def test_contact_and_location_appear_only_with_the_grants(casework: Casework) -> None:
    officer, partner, item, secrets = _setup(casework)
    page = officer.get(f"/items/{item.id}").text
    assert 'name="grant_contact"' in page and 'name="grant_location"' in page
    partner_user = partner.user
    _share(officer, item.id, f"user:{partner_user.id}", grant_contact="yes")
    page = partner.get(f"/items/{item.id}").text
    assert CONTACT in page and NAME in page
    assert GPS not in page and PLACE not in page
    _share(officer, item.id, f"user:{partner_user.id}", grant_location="yes")
    page = partner.get(f"/items/{item.id}").text
    assert GPS in page and "PLANTED-GPS-LON" in page and "PLANTED-XMP-LOCATION" in page and PLACE in page
    assert "TestCam" not in page  # the rest of the metadata is not location
    for what, secret in secrets.items():
        assert secret not in page, f"{what} leaked with grants"
    with casework.db.read() as session:
        shares = list(session.exec(select(Share).where(col(Share.partner_user_id) == partner_user.id)))
    assert sorted((s.grant_contact, s.grant_location) for s in shares) == [(False, True), (True, False)]
    created = [e.detail for e in casework.events("share.created")]
    assert any(d and d.get("grant_contact") is True for d in created)
    # Revoking the granting shares takes the grants away on the next request.
    for share in shares:
        assert officer.post(f"/shares/{share.id}/revoke", data={"confirmed": "yes"}).status_code == 303
    page = partner.get(f"/items/{item.id}").text
    assert CONTACT not in page and GPS not in page and re.search(r"SHA-256", page)
