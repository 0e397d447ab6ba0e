"""Searching the custody ledger (storage.audit_search) and the chain's health record
(storage.audit_health), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from storage import audit_health, audit_search, ledger
from storage.db import Database
from storage.errors import Invalid, NotFound
from storage.reports import create_report


def _event(db: Database, *, actor: str, action: str, report_id: str | None = None, item_id: str | None = None) -> int:
    with db.write() as s:
        event = ledger.append(db, s, actor=actor, action=action, report_id=report_id, item_id=item_id)
    return event.seq


@pytest.fixture
def ledgered(db: Database) -> dict[str, object]:
    with db.write() as s:
        report = create_report(db, s, "RTC/2026/0001", "rtc", actor="alice@force.test")
        other = create_report(db, s, "RTC/2026/0002", "rtc", actor="alice@force.test")
        rid, oid = report.id, other.id
    seqs = []
    for n in range(7):
        seqs.append(_event(db, actor="bob@force.test", action="item.viewed", report_id=rid, item_id="i1"))
        seqs.append(_event(db, actor="carol@force.test", action="media.stream", report_id=rid, item_id="i1"))
        seqs.append(_event(db, actor="bob@force.test", action="media.stream", report_id=oid, item_id=f"o{n}"))
    _event(db, actor="bob@force.test", action="item.triage", report_id=rid, item_id="i1")
    return {"report": rid, "other": oid}


def _seqs(page: audit_search.AuditPage) -> list[int]:
    return [e.seq for e in page.events]


def test_each_filter_finds_exactly_its_events_newest_first(db: Database, ledgered: dict[str, object]) -> None:
    bob = audit_search.search(db, audit_search.AuditFilter(actor="bob@force.test"), limit=500)
    assert {e.actor for e in bob.events} == {"bob@force.test"} and len(bob.events) == 15
    assert _seqs(bob) == sorted(_seqs(bob), reverse=True)

    item = audit_search.search(db, audit_search.AuditFilter(item_id="i1"), limit=500)
    assert len(item.events) == 15 and {e.item_id for e in item.events} == {"i1"}

    by_report = audit_search.search(db, audit_search.make_filter(report="RTC/2026/0002"), limit=500)
    assert len(by_report.events) == 8  # its report.created too
    assert set(by_report.references.values()) == {"RTC/2026/0002"}

    exact = audit_search.search(db, audit_search.make_filter(action="media.stream"), limit=500)
    assert len(exact.events) == 14
    prefix = audit_search.search(db, audit_search.make_filter(action="media.*"), limit=500)
    assert _seqs(prefix) == _seqs(exact)
    item_prefix = audit_search.search(db, audit_search.make_filter(action="item."), limit=500)
    assert {e.action for e in item_prefix.events} == {"item.viewed", "item.triage"}

    seen = audit_search.search(db, audit_search.with_seeing(audit_search.AuditFilter(item_id="i1")), limit=500)
    assert {e.action for e in seen.events} == {"item.viewed", "media.stream"}
    assert {e.actor for e in seen.events} == {"bob@force.test", "carol@force.test"}

    both = audit_search.search(db, audit_search.make_filter(actor="bob@force.test", report="RTC/2026/0001",
                                                            action="media."), limit=500)
    assert both.events == []


def test_time_range_is_since_inclusive_until_exclusive(db: Database, ledgered: dict[str, object]) -> None:
    every = audit_search.search(db, audit_search.AuditFilter(), limit=500).events
    middle = every[len(every) // 2]
    after = audit_search.search(db, audit_search.AuditFilter(since=middle.at), limit=500).events
    assert middle.seq in [e.seq for e in after]
    assert all(e.at >= middle.at for e in after)
    before = audit_search.search(db, audit_search.AuditFilter(until=middle.at), limit=500).events
    assert middle.seq not in [e.seq for e in before]
    assert all(e.at < middle.at for e in before)
    future = audit_search.make_filter(since=(middle.at + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"))
    assert audit_search.search(db, future).events == []


def test_keyset_pages_walk_every_match_once_both_ways(db: Database, ledgered: dict[str, object]) -> None:
    f = audit_search.AuditFilter(actor="bob@force.test")
    everything = _seqs(audit_search.search(db, f, limit=500))
    first = audit_search.search(db, f, limit=4)
    assert first.newer is None and first.older is not None
    walked, page, pages = _seqs(first), first, [first]
    while page.older is not None:
        page = audit_search.search(db, f, before=page.older, limit=4)
        assert page.newer is not None
        walked += _seqs(page)
        pages.append(page)
    assert walked == everything
    # ...and back up with "newer" from the last page to the first.
    back = pages[-1]
    for expected in reversed(pages[:-1]):
        assert back.newer is not None
        back = audit_search.search(db, f, after=back.newer, limit=4)
        assert _seqs(back) == _seqs(expected)
    assert back.newer is None


def test_a_filter_that_cannot_match_is_refused_not_answered_with_nothing(db: Database,
                                                                       ledgered: dict[str, object]) -> None:
    with pytest.raises(NotFound):
        audit_search.search(db, audit_search.make_filter(report="RTC/2026/9999"))
    for bad in ({"action": "item viewed; drop"}, {"since": "yesterday"}, {"since": "2026-12-02", "until": "2026-12-01"}):
        with pytest.raises(Invalid):
            audit_search.make_filter(**bad)


def test_export_walk_returns_every_match_in_small_batches(db: Database, ledgered: dict[str, object]) -> None:
    f = audit_search.make_filter(report="RTC/2026/0001")
    rows = list(audit_search.iter_events(db, f, batch=3))
    assert [e.seq for e, _ in rows] == _seqs(audit_search.search(db, f, limit=500))
    assert {ref for _, ref in rows} == {"RTC/2026/0001"}


def test_full_verification_is_recorded_and_shown_apart_from_never(db: Database, ledgered: dict[str, object]) -> None:
    with db.read() as s:
        health = audit_health.chain_health(s, dt.datetime.now(dt.UTC))
    assert health.full is None and health.checkpoint_seq is None  # "never"
    assert audit_health.describe_age(health.checkpoint_age) == "never"
    result = ledger.verify(db)
    assert audit_health.record_full_verification(db, result, by="test")
    with db.read() as s:
        health = audit_health.chain_health(s, dt.datetime.now(dt.UTC))
    assert health.full is not None and health.full.ok and health.full.head_seq == result.head_seq
    assert health.head_seq == result.head_seq
