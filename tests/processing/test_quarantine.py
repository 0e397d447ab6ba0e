"""Infected originals move to the quarantine prefix (issue 14 item 5): no viewer,
download or export path can read them; the row keeps the hash and fixity still proves
the bytes. On both databases (env), the filesystem store; both stores below."""

from __future__ import annotations

import hashlib

import anyio
import pytest

from storage import fixity, ledger, quarantine
from storage.blobs import BlobNotFound, BlobStore, put_bytes, read_all
from storage.db import Database
from storage.items import create_item
from storage.lifecycle import ItemState, transition
from storage.models import EvidenceItem
from storage.reports import create_report
from tests.fixtures.media import Media
from tests.processing.conftest import Env


def test_an_infected_original_is_quarantined_out_of_reach_and_kept_byte_exact(env: Env, media: Media) -> None:
    data = media.read("eicar_jpeg")
    item_id = env.ingest_file(media.eicar_jpeg)
    with env.db.read() as s:
        old_key = s.get(EvidenceItem, item_id).blob_key  # type: ignore[union-attr]
    env.drain()
    with env.db.read() as s:
        item = s.get(EvidenceItem, item_id)
        assert item is not None
        new_key = item.blob_key
    assert item.state == "infected"
    assert new_key.startswith("quarantine/") and item.sha256 == hashlib.sha256(data).hexdigest()
    store = env.blobs.store
    # Nothing that serves or exports bytes reaches it, under either name.
    for key in (new_key, old_key):
        with pytest.raises(BlobNotFound):
            b"".join(store.read_sync(key))
    # Kept byte-exact: fixity re-hashes it from quarantine.
    outcome = anyio.run(lambda: fixity.check_item(env.db, store, item_id, actor="test"))
    assert outcome is not None and outcome.result == "ok"
    event = env.events(item_id, "item.quarantined")
    assert event == [{"from_key": old_key, "to_key": new_key, "sha256": item.sha256, "size": item.size,
                      "signature": "Exhibit.Test.EICAR.UNOFFICIAL"}]
    assert ledger.verify(env.db).ok


def test_quarantine_on_both_stores_and_a_crash_mid_move_is_completed(db: Database, blob_store: BlobStore) -> None:
    data = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    key = anyio.run(put_bytes, blob_store, data, "originals")
    with db.write() as s:
        report_id = create_report(db, s, "CRIME/6", "crime", actor="test").id
        item = create_item(db, s, report_id=report_id, blob_key=key, size=len(data),
                           sha256=hashlib.sha256(data).hexdigest(), actor="test")
        transition(db, s, item, ItemState.SCANNING, actor="test")
        transition(db, s, item, ItemState.INFECTED, actor="test", reason="signature EICAR")
        item_id = item.id
    # A crash after the copy, before the row changed: the copy exists, the row still
    # names the original; housekeeping completes the move.
    mover = blob_store
    anyio.run(mover.quarantine_copy, key)  # type: ignore[attr-defined]
    assert quarantine.pending(db) == [item_id]
    moved = quarantine.quarantine_pending(db, blob_store, actor="test")
    assert moved == [item_id] and quarantine.pending(db) == []
    with db.read() as s:
        new_key = s.get(EvidenceItem, item_id).blob_key  # type: ignore[union-attr]
    assert new_key.startswith("quarantine/")
    for k in (key, new_key):
        with pytest.raises(BlobNotFound):
            anyio.run(read_all, blob_store, k)
    reader = blob_store.read_quarantined  # type: ignore[attr-defined]

    async def forensic() -> bytes:
        return b"".join([chunk async for chunk in reader(new_key)])

    assert anyio.run(forensic) == data
