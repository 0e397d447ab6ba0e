"""Partners get evidence bundles too (issue 13 item 3; AC-04, AC-05).

A partner whose live share allows downloads takes an exhibit away as the same signed
bundle the force exports for court, limited to what is shared: the planted casework of
tests/reviewer_ui/test_partner_view.py (triage reason, tag, note, an officer's download
reason and e-mail, another partner, storage keys in argv, GPS, the citizen's contact and
place) is in none of its files, the custody trail still verifies offline with
``sha256sum -c`` and ``exhibit verify-bundle``, and the export is recorded."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import subprocess
import zipfile
from pathlib import Path

from storage import ledger
from storage.bundle_verify import verify_bundle
from storage.models import EvidenceItem
from tests.fixtures.casework import Casework, SignedIn
from tests.reviewer_ui.test_partner_view import CONTACT, GPS, NAME, PLACE, STATEMENT, _setup, _share

REASON = "Disclosure to the defence under CPIA"


def _bundle(partner: SignedIn, item: EvidenceItem, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    r = partner.post(f"/items/{item.id}/bundle", {"reason": REASON})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["cache-control"] == "no-store"
    path = tmp_path / "partner-bundle.zip"
    path.write_bytes(r.content)
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        return path, {name: zf.read(name) for name in zf.namelist()}


async def _read(casework: Casework, key: str) -> bytes:
    return b"".join([chunk async for chunk in casework.store.read(key)])


def _public_key(casework: Casework) -> str:
    assert casework.settings.signing_key_file is not None
    return ledger.public_key_b64(ledger.load_or_create_signing_key(casework.settings.signing_key_file))


def test_a_partner_bundle_has_the_shared_exhibit_and_none_of_the_casework(casework: Casework, tmp_path: Path) -> None:
    _officer, partner, item, secrets = _setup(casework)
    # The worker's and the staff's events in the shapes they are really written
    # (processing/pipeline.py, storage/lifecycle.py): provenance that names a storage key
    # or a server path, a clamd reply, an officer's human decision with a reason, and a
    # clean state change.
    officer_email = secrets["officer email"]
    written = [
        ("worker:node1:42", "item.verified", {"tool": "hashlib", "argv": ["sha256", item.blob_key],
                                              "expected": item.sha256, "computed": item.sha256}),
        ("worker:node1:42", "item.sniffed", {"argv": ["/usr/bin/ffprobe", "-v", "error", "file:input"]}),
        ("worker:node1:42", "item.scanning", {"from": "received", "to": "scanning"}),
        ("worker:node1:42", "item.unscannable", {"from": "scanning", "to": "unscannable",
                                                 "reason": "PLANTED-CLAMD-REPLY size limit", "argv": ["INSTREAM",
                                                                                                     item.blob_key]}),
        (officer_email, "item.clean", {"from": "unscannable", "to": "clean", "human_decision": True,
                                       "reason": "PLANTED-OVERRIDE checked by hand"}),
        ("worker:node1:42", "item.processing", {"from": "clean", "to": "processing"}),
        ("worker:node1:42", "item.ready", {"from": "processing", "to": "ready"}),
    ]
    with casework.db.write() as session:
        for actor, action, detail in written:
            ledger.append(casework.db, session, actor=actor, action=action, subject=f"item:{item.id}",
                          report_id=item.report_id, item_id=item.id, detail=detail)
    secrets.update({"clamd reply": "PLANTED-CLAMD-REPLY", "override reason": "PLANTED-OVERRIDE",
                    "server path": "/usr/bin/ffprobe"})
    path, files = _bundle(partner, item, tmp_path)
    original = asyncio.run(_read(casework, item.blob_key))

    # Nothing of the force's casework, and no location or contact without a grant, in any
    # file. (A copy's argv is there, as in the force's bundle, for anyone to reproduce the
    # step: with the storage keys replaced, which are checked below like every secret.)
    secrets.pop("argv")
    for name, data in files.items():
        for what, secret in {**secrets, "GPS": GPS, "XMP location": "PLANTED-XMP-LOCATION", "contact": CONTACT,
                             "name": NAME, "place": PLACE}.items():
            assert secret.encode() not in data, f"{what} leaked in {name}"

    # The exhibit itself, with what the share grants.
    manifest = json.loads(files["manifest.json"])
    assert manifest["audience"] == "partner" and manifest["shared_with"] == "CPS North"
    assert manifest["reason"] == REASON and manifest["exported_by"] == partner.user.email
    [entry] = manifest["items"]
    assert entry["id"] == item.id and entry["bytes_included"] and "triage" not in entry
    assert files[entry["file"]] == original
    assert entry["submission"]["statement"] == STATEMENT and entry["submission"]["location"] is None
    assert entry["metadata"]["exif"]["Make"] == "TestCam" and "GPSInfo" not in entry["metadata"]["exif"]
    assert all("<original>" in d["argv"] for d in entry["derivatives"])

    # The custody trail: provenance in full, the casework events only as their hash.
    lines = [json.loads(line) for line in files["custody/events.jsonl"].splitlines()]
    full = [e for e in lines if not e.get("elided")]
    assert [e["action"] for e in full] == ["item.scanning", "item.processing", "item.ready"]
    assert all(e["item_id"] == item.id for e in full)
    casework_events = {e.hash for e in casework.events(item_id=item.id)
                       if e.action in ("item.triage", "note.added", "tag.added", "item.original_downloaded",
                                       "share.created", "item.viewed")}
    assert casework_events and casework_events <= {e["hash"] for e in lines if e.get("elided")}
    # ...and the partner is told so, in the manifest and the printable statement.
    withheld = entry["custody_events_withheld"]
    head = manifest["custody"]["ledger_head"]["seq"]  # export.created comes after the bundle
    assert withheld == len([e for e in casework.events(item_id=item.id)
                            if e.seq <= head and e.hash not in {f["hash"] for f in full}])
    assert "Partner copy" in manifest["partner_copy"]
    statement = files["continuity.html"].decode()
    assert "Partner copy" in statement and f"{withheld} further custody events" in statement

    # Anyone checks it offline: standard tools, and verify-bundle with the force's key.
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(path) as zf:
        zf.extractall(unzipped)
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=unzipped, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    report = verify_bundle(path, _public_key(casework))
    assert report.ok, report.problems

    # Recorded: who, why, for whom, and the bundle's SHA-256 (the sharer sees it).
    [created] = casework.events(action="export.created", item_id=item.id)
    assert created.actor == partner.user.email
    assert created.detail is not None and created.detail["reason"] == REASON
    assert created.detail["audience"] == "partner" and created.detail["items"] == [item.id]
    assert created.detail["bundle_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_location_travels_only_with_the_location_grant(casework: Casework, tmp_path: Path) -> None:
    officer, partner, item, _secrets = _setup(casework)
    _share(officer, item.id, f"user:{partner.user.id}", grant_location="yes")
    _path, files = _bundle(partner, item, tmp_path)
    [entry] = json.loads(files["manifest.json"])["items"]
    assert entry["metadata"]["exif"]["GPSInfo"]["GPSLatitude"] == GPS
    assert entry["submission"]["location"] == PLACE
    assert CONTACT.encode() not in files["manifest.json"]  # contact details never leave in a bundle


def test_no_bundle_without_a_live_download_share_or_a_fresh_code(casework: Casework, tmp_path: Path) -> None:
    officer_user = casework.user("officer")
    viewer_only = casework.user("partner", org="Viewers Ltd")
    stranger = casework.user("partner", org="Elsewhere")
    report = casework.report(officer_user)
    shared = casework.item(report).item
    unshared = casework.item(report).item
    officer = casework.client(officer_user)
    r = officer.post(f"/items/{shared.id}/shares", {"partner": f"user:{viewer_only.id}", "days": "10"})
    assert r.status_code == 303

    # A share to view is not a share to take away; nor is another partner's, or another item.
    for user, item_id in ((viewer_only, shared.id), (stranger, shared.id), (viewer_only, unshared.id)):
        r = casework.client(user).post(f"/items/{item_id}/bundle", {"reason": REASON})
        assert r.status_code == 404 and b"PK" not in r.content[:2]
    assert not casework.events(action="export.created")

    # With downloads allowed, a stale sign-in is asked for a fresh code first (AC-13).
    assert officer.post(f"/items/{shared.id}/shares", {"partner": f"user:{viewer_only.id}", "days": "10",
                                                        "allow_download": "yes"}).status_code == 303
    stale = casework.client(viewer_only, verified_seconds_ago=3600)
    r = stale.post(f"/items/{shared.id}/bundle", {"reason": REASON})
    assert r.status_code == 403 and "Confirm it is you" in r.text and b"PK" not in r.content[:2]
    assert not casework.events(action="export.requested")
    r = stale.post(f"/items/{shared.id}/bundle", {"reason": "short"})
    assert r.status_code == 400 and "Give a reason" in r.text
    fresh = casework.client(viewer_only)
    _path, files = _bundle(fresh, shared, tmp_path)
    assert json.loads(files["manifest.json"])["items"][0]["id"] == shared.id
