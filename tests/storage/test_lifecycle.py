"""The evidence lifecycle: one table of legal transitions; state and custody event together."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, text

from storage import ledger
from storage.db import Database
from storage.items import create_item
from storage.lifecycle import TRANSITIONS, VIEWABLE, IllegalTransition, ItemState, transition
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
        query = select(CustodyEvent.action).where(CustodyEvent.item_id == item_id).order_by(CustodyEvent.seq)  # type: ignore[call-overload]
        return [str(row[0]) for row in s.exec(query)]


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
    # Fixity may still raise the alarm on its bytes at rest (issue 14 item 4); both
    # exits are terminal and neither is viewable.
    assert reachable == {ItemState.PURGED, ItemState.INTEGRITY_ALARM}
    assert not reachable & VIEWABLE


def test_unscannable_is_never_clean_without_a_decision() -> None:
    # The only way out of unscannable is to clean, which the reviewer's recorded decision
    # uses; the scanner itself never produces clean for it. (Fixity's alarm and purge
    # are the other, terminal, exits.)
    assert TRANSITIONS[ItemState.UNSCANNABLE] == {ItemState.CLEAN, ItemState.PURGED, ItemState.INTEGRITY_ALARM}


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


def test_transition_is_judged_on_the_stored_state_not_a_stale_copy(db: Database) -> None:
    item_id = _item(db)
    with db.read() as s:
        stale = s.get(EvidenceItem, item_id)  # loaded while still `received`
    assert stale is not None
    with db.write() as s:
        item = s.get(EvidenceItem, item_id)
        assert item is not None
        transition(db, s, item, ItemState.INTEGRITY_ALARM, actor="worker", reason="hash mismatch")
    # A caller still holding the old copy must not move the item out of the alarm.
    with pytest.raises(IllegalTransition), db.write() as s:
        s.add(stale)
        transition(db, s, stale, ItemState.SCANNING, actor="worker")
    with db.read() as s:
        item = s.get(EvidenceItem, item_id)
        assert item is not None and item.state == ItemState.INTEGRITY_ALARM
    assert _events(db, item_id) == ["item.received", "item.integrity_alarm"]
    assert ledger.verify(db).ok


def test_concurrent_transitions_out_of_one_state_do_not_both_happen(db: Database) -> None:
    if not db.is_postgresql:
        # On SQLite writers are serialised by BEGIN IMMEDIATE (the stale-copy test above
        # covers the rest); the race needs PostgreSQL's concurrent writers.
        assert db.is_sqlite
        return
    item_id = _item(db)
    loaded = threading.Event()
    other_done = threading.Event()
    outcome: list[BaseException | None] = []

    def slow_worker() -> None:
        try:
            with db.write() as s:
                item = s.get(EvidenceItem, item_id)
                assert item is not None and item.state == ItemState.RECEIVED
                loaded.set()
                assert other_done.wait(30)
                transition(db, s, item, ItemState.SCANNING, actor="worker")
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=slow_worker)
    t.start()
    assert loaded.wait(30)
    with db.write() as s:
        item = s.get(EvidenceItem, item_id)
        assert item is not None
        transition(db, s, item, ItemState.PURGED, actor="records-officer", reason="legal order")
    other_done.set()
    t.join()
    assert isinstance(outcome[0], IllegalTransition)
    assert _events(db, item_id) == ["item.received", "item.purged"]


def test_only_a_recorded_human_decision_clears_an_unscannable_item(db: Database) -> None:
    item_id = _item(db)
    for target in (ItemState.SCANNING, ItemState.UNSCANNABLE):
        with db.write() as s:
            item = s.get(EvidenceItem, item_id)
            assert item is not None
            transition(db, s, item, target, actor="worker:w1", reason="over 2 GiB" if target == "unscannable" else None)
    # A worker whose later scan came back clean may not clear it, nor anyone without a reason.
    for kwargs in ({"reason": "rescanned: no signature"}, {"human_decision": True}):
        with pytest.raises(IllegalTransition), db.write() as s:
            item = s.get(EvidenceItem, item_id)
            assert item is not None
            transition(db, s, item, ItemState.CLEAN, actor="worker:w1", **kwargs)
    with db.write() as s:
        item = s.get(EvidenceItem, item_id)
        assert item is not None
        event = transition(db, s, item, ItemState.CLEAN, actor="user:supervisor", human_decision=True,
                           reason="viewed in the forensic sandbox; no concern")
    assert event.detail is not None and event.detail["human_decision"] is True
    assert _events(db, item_id)[-1] == "item.clean"


def test_item_job_and_custody_event_commit_together_or_not_at_all(db: Database) -> None:
    # SECURITY_CHECKLIST CF-07: the connection dies between the statements of the
    # transaction that makes an upload evidence; nothing of it may remain.
    with db.write() as s:
        report_id = create_report(db, s, "CR-9", "crime", actor="test").id
    with pytest.raises(Exception), db.write() as s:  # noqa: B017 - whatever the driver raises
        create_item(db, s, report_id=report_id, blob_key="originals/" + "b" * 32, size=3,
                    sha256="1" * 64, original_filename="photo.jpg", actor="citizen")
        if db.is_postgresql:
            pid = s.connection().execute(text("SELECT pg_backend_pid()")).scalar_one()
            with db.engine.connect() as killer:
                assert killer.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
        else:
            # The process holding the SQLite connection goes away: SQLite rolls back.
            s.connection().connection.dbapi_connection.close()  # type: ignore[union-attr]
    with db.read() as s:
        assert s.exec(select(EvidenceItem)).scalars().all() == []  # type: ignore[call-overload]
        assert s.exec(select(Job)).scalars().all() == []  # type: ignore[call-overload]
        actions = [str(r[0]) for r in s.exec(select(CustodyEvent.action))]  # type: ignore[call-overload]
    assert actions == ["report.created"]
    assert ledger.verify(db).ok


def test_received_event_states_the_true_hash_whatever_detail_a_caller_adds(db: Database) -> None:
    with db.write() as s:
        report = create_report(db, s, "CR-10", "crime", actor="test")
        item = create_item(db, s, report_id=report.id, blob_key="originals/" + "c" * 32, size=7, sha256="2" * 64,
                           actor="citizen", detail={"sha256": "f" * 64, "size": 1, "camera": "phone"})
        item_id = item.id
    with db.read() as s:
        event = s.exec(select(CustodyEvent).where(CustodyEvent.item_id == item_id)).scalars().one()  # type: ignore[call-overload, arg-type]
    assert event.detail["sha256"] == "2" * 64 and event.detail["size"] == 7 and event.detail["camera"] == "phone"
