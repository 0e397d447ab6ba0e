"""An original that fails its fixity check is shown to every admin (issue 14 item 4)."""

from __future__ import annotations

import hashlib

import anyio

from storage import fixity
from storage.blobs import put_bytes
from storage.blobs.filesystem import FilesystemBlobStore
from storage.items import create_item
from storage.reports import create_report
from tests.fixtures.reviewer import ReviewHarness


def test_admin_page_shows_the_integrity_alarm_of_a_missing_original(review: ReviewHarness) -> None:
    store = FilesystemBlobStore(review.settings.data_dir / "fixity-blobs")
    data = b"evidence" * 1000
    key = anyio.run(put_bytes, store, data, "originals")
    with review.db.write() as s:
        report = create_report(review.db, s, "CRIME/77", "crime", actor="test")
        item_id = create_item(review.db, s, report_id=report.id, blob_key=key, size=len(data),
                              sha256=hashlib.sha256(data).hexdigest(), actor="test").id
    admin = review.make_user("admin")
    client = review.client()
    review.signed_in_session(client, admin)
    page = client.get("/admin/users")
    assert page.status_code == 200 and 'id="integrity-alarms"' not in page.text

    store._object_path(key).unlink()
    summary = anyio.run(lambda: fixity.run_async(review.db, store, actor="test:fixity"))
    assert summary.alarms == 1

    page = client.get("/admin/users")
    assert 'id="integrity-alarms"' in page.text
    assert f'href="/items/{item_id}"' in page.text
    assert "the stored original is missing" in page.text
