"""The evidence lifecycle: one table of legal transitions; state and custody event together."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from storage import ledger
from storage.db import Database
from storage.items import create_item
from storage.lifecycle import TRANSITIONS, IllegalTransition, ItemState, transition
from storage.models import CustodyEvent, EvidenceItem, Job
from storage.reports import create_report


def _item(db: Database) -> str:
    with db.write() as s:
        report = create_report(db, s, "RTC-1", "rtc", actor="test")
        item = create_item(db, s, report_id=report.id, blob_key="originals/" + "a" * 32, size=3,
                           sha256="0" * 64, original_filename="clip.mp4", actor="citizen")
        return item.id


def _events(db: Database, item_id: str) -> list[str]:
    with db.read() as s:
        return list(s.exec(select(CustodyEvent.action).where(CustodyEvent.item_id == item_id)  # type: ignore[call-overload, arg-type]
                           .order_by(CustodyEvent.seq)).scalars())  # type: ignore[arg-type]


def test_new_item_comes_with_its_job_and_custody_event(db: Database) -> None:
    item_id = _item(db)
    with db.read() as s:
        item = s.get(EvidenceItem, item_id)
        jobs = s.exec(select(Job).where(Job.item_id == item_id)).scalars().all()  # type: ignore[call-overload, arg-type]
    assert item is not None and item.state == ItemState.RECEIVED
    assert len(jobs) == 1
    assert _events(db, item_id) == ["item.received"]


def test_legal_path_to_ready_records_every_step(db: Database) -> None:
    item_id = _item(db)
    for target in (ItemState.SCANNING, ItemState.CLEAN, ItemState.PROCESSING, ItemState.READY):
        with db.write() as s:
            item = s.get(EvidenceItem, item_id)
            assert item is not None
            transition(db, s, item, target, actor="worker")
    assert _events(db, item_id) == ["item.received", "item.scanning", "item.clean", "item.processing", "item.ready"]
    assert ledger.verify(db).ok


@pytest.mark.parametrize("target", [ItemState.READY, ItemState.CLEAN, ItemState.PROCESSING])
def test_illegal_transition_raises_and_changes_nothing(db: Database, target: ItemState) -> None:
    item_id = _item(db)
    before = _events(db, item_id)
    with pytest.raises(IllegalTransition), db.write() as s:
        item = s.get(EvidenceItem, item_id)
        assert item is not None
        transition(db, s, item, target, actor="worker")
    with db.read() as s:
        item = s.get(EvidenceItem, item_id)
        assert item is not None and item.state == ItemState.RECEIVED
    assert _events(db, item_id) == before


def test_infected_item_can_never_become_viewable() -> None:
    reachable = set()
    frontier = [ItemState.INFECTED]
    while frontier:
        state = frontier.pop()
        for nxt in TRANSITIONS[state]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == {ItemState.PURGED}


def test_unscannable_is_never_clean_without_a_decision() -> None:
    # The only way out of unscannable is to clean, which the reviewer's recorded decision
    # uses; the scanner itself never produces clean for it.
    assert TRANSITIONS[ItemState.UNSCANNABLE] == {ItemState.CLEAN, ItemState.PURGED}


def test_state_change_and_event_roll_back_together(db: Database) -> None:
    item_id = _item(db)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), db.write() as s:
        item = s.get(EvidenceItem, item_id)
        assert item is not None
        transition(db, s, item, ItemState.SCANNING, actor="worker")
        raise Boom
    with db.read() as s:
        item = s.get(EvidenceItem, item_id)
        assert item is not None and item.state == ItemState.RECEIVED
    assert _events(db, item_id) == ["item.received"]
