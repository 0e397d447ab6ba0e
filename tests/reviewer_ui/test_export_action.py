""""Export for court" on the report page (issue 13 item 1): officers on their own reports
and admins, with a reason and a fresh TOTP code; the browser receives the same bundle as
`exhibit export`, which verifies offline; both ends are custody events."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from storage import ledger
from storage.bundle_verify import verify_bundle
from tests.fixtures.casework import Casework

REASON = "Disclosure to the CPS for the trial"


def _public_key(casework: Casework) -> str:
    assert casework.settings.signing_key_file is not None
    return ledger.public_key_b64(ledger.load_or_create_signing_key(casework.settings.signing_key_file))


def test_owner_exports_a_bundle_that_verifies_and_is_recorded(casework: Casework, tmp_path: Path) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    photo = casework.item(report)
    client = casework.client(officer)
    page = client.get(f"/reports/{report.id}")
    assert "Export for court" in page.text
    r = client.post(f"/reports/{report.id}/export", {"reason": REASON})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"].startswith('attachment; filename="exhibit-')
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(r.content)
    with zipfile.ZipFile(bundle) as zf:
        assert zf.read(f"originals/{photo.item.id}_evidence.jpg") == photo.original
    report_check = verify_bundle(bundle, _public_key(casework))
    assert report_check.ok, report_check.problems
    requested = casework.events("export.requested")
    created = casework.events("export.created")
    assert len(requested) == 1 and len(created) == 1 and requested[0].seq < created[0].seq
    detail = created[0].detail or {}
    assert detail["bundle_sha256"] == hashlib.sha256(r.content).hexdigest()
    assert detail["reason"] == REASON and detail["items"] == [photo.item.id]
    assert officer.email in created[0].actor or officer.id in created[0].actor


def test_export_needs_a_fresh_code_and_a_reason(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    casework.item(report)
    stale = casework.client(officer, verified_seconds_ago=600)
    r = stale.post(f"/reports/{report.id}/export", {"reason": REASON})
    assert r.status_code == 403 and "Confirm it is you" in r.text  # the form held for a code (i15)
    fresh = casework.client(officer)
    r = fresh.post(f"/reports/{report.id}/export", {"reason": "short"})
    assert r.status_code == 400 and "give a reason" in r.text
    assert casework.events("export.requested") == [] and casework.events("export.created") == []


def test_only_the_owner_and_admins_may_export(casework: Casework) -> None:
    owner = casework.user("officer")
    report = casework.report(owner)
    casework.item(report)
    for role in ("officer", "auditor", "partner"):
        client = casework.client(casework.user(role))
        assert client.post(f"/reports/{report.id}/export", {"reason": REASON}).status_code == 404, role
    auditor = casework.client(casework.user("auditor"))
    assert "Export for court" not in auditor.get(f"/reports/{report.id}").text
    admin = casework.client(casework.user("admin"))
    assert admin.post(f"/reports/{report.id}/export", {"reason": REASON}).status_code == 200
    assert len(casework.events("export.created")) == 1
