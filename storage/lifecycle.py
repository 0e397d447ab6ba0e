"""The evidence item lifecycle: the one table of legal transitions, and the one function
that changes an item's state.

    receiving → received → scanning → clean → processing → ready
                         ↘ integrity_alarm (re-computed SHA-256 differs from ingest)
                         ↘ rejected       (not an allowed type by magic and decode)
                scanning ↘ infected       (kept byte-exact; never previewed or shared)
                         ↘ unscannable    (over scanner limits; never treated as clean)
              processing ↘ failed         (original kept; reason shown; retry possible)
    any → purged  (bytes destroyed under retention or legal order; record and hash kept)
    any with bytes at rest → integrity_alarm  (fixity: a re-hash of the original at rest
                             differs from its ingest hash, or the original is missing)

``transition`` changes the state and appends the custody event in the caller's
transaction, so the two always commit together. An illegal transition raises
``IllegalTransition`` and changes nothing.
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from storage import ledger
from storage.db import Database
from storage.models import CustodyEvent, EvidenceItem, utcnow


class ItemState(enum.StrEnum):
    RECEIVING = "receiving"
    RECEIVED = "received"
    SCANNING = "scanning"
    CLEAN = "clean"
    PROCESSING = "processing"
    READY = "ready"
    INFECTED = "infected"
    UNSCANNABLE = "unscannable"
    REJECTED = "rejected"
    INTEGRITY_ALARM = "integrity_alarm"
    FAILED = "failed"
    PURGED = "purged"


S = ItemState
TRANSITIONS: dict[ItemState, frozenset[ItemState]] = {
    S.RECEIVING: frozenset({S.RECEIVED}),
    # Verification and sniffing happen before the scan; a worker that restarts after a
    # crash may run them again from `scanning`, hence the same exits there.
    S.RECEIVED: frozenset({S.SCANNING, S.INTEGRITY_ALARM, S.REJECTED}),
    S.SCANNING: frozenset({S.CLEAN, S.INFECTED, S.UNSCANNABLE, S.INTEGRITY_ALARM, S.REJECTED}),
    S.CLEAN: frozenset({S.PROCESSING}),
    S.PROCESSING: frozenset({S.READY, S.FAILED}),
    S.FAILED: frozenset({S.PROCESSING}),  # retry
    # An unscannable item can only leave through a recorded human decision.
    S.UNSCANNABLE: frozenset({S.CLEAN}),
    S.READY: frozenset(),
    S.INFECTED: frozenset(),
    S.REJECTED: frozenset(),
    S.INTEGRITY_ALARM: frozenset(),
    S.PURGED: frozenset(),
}
# Fixity (storage.fixity) re-hashes originals at rest whatever their state: a changed or
# missing original raises the alarm from any state that has bytes (not `receiving`: no
# original yet; not `purged`: destroyed on purpose). Threat: evidence silently altered
# or lost in storage, then shown or exported as if intact (ACPO principle 1).
for _state in ItemState:
    if _state not in (S.RECEIVING, S.PURGED, S.INTEGRITY_ALARM):
        TRANSITIONS[_state] = TRANSITIONS[_state] | {S.INTEGRITY_ALARM}
# Any state but purged may go to purged.
for _state in ItemState:
    if _state is not S.PURGED:
        TRANSITIONS[_state] = TRANSITIONS[_state] | {S.PURGED}

TERMINAL: frozenset[ItemState] = frozenset(
    {S.READY, S.INFECTED, S.UNSCANNABLE, S.REJECTED, S.INTEGRITY_ALARM, S.FAILED, S.PURGED}
)
# Transitions only a person may make, with a stated reason: an unscannable file is
# never treated as clean because a later scan (other limits, another clamd) said so.
HUMAN_ONLY: frozenset[tuple[ItemState, ItemState]] = frozenset({(S.UNSCANNABLE, S.CLEAN)})
# States in which bytes may be shown to a reviewer (through derivatives only).
VIEWABLE: frozenset[ItemState] = frozenset({S.READY})


class IllegalTransition(Exception):
    code = "ERR_ILLEGAL_TRANSITION"

    def __init__(self, item_id: str, current: str, target: str) -> None:
        super().__init__(f"item {item_id}: {current} → {target} is not a legal transition")
        self.current = current
        self.target = target


def can_transition(current: str, target: str) -> bool:
    try:
        return ItemState(target) in TRANSITIONS[ItemState(current)]
    except ValueError:
        return False


def transition(
    db: Database,
    session: Session,
    item: EvidenceItem,
    target: ItemState,
    *,
    actor: str,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    request_id: str | None = None,
    human_decision: bool = False,
) -> CustodyEvent:
    """Move ``item`` to ``target`` and append ``item.<target>`` to the ledger, in the
    caller's writing transaction. Raises ``IllegalTransition`` (nothing changed).
    Transitions in ``HUMAN_ONLY`` also need ``human_decision=True`` and a ``reason``.

    Legality is judged on the state in the database, read (and on PostgreSQL locked)
    here, not on ``item.state`` as the caller loaded it: under READ COMMITTED another
    transaction may have moved the item since (a purge, an integrity alarm), and a
    decision taken on the stale state would overwrite it and leave a custody trail that
    contradicts itself (two transitions out of the same state)."""
    query = select(EvidenceItem.state).where(EvidenceItem.id == item.id)  # type: ignore[call-overload]
    if db.is_postgresql:
        query = query.with_for_update()
    current = session.exec(query).scalars().first()
    if current is None:  # not written yet: nothing to race with
        current = item.state
    if not can_transition(current, target):
        raise IllegalTransition(item.id, current, target)
    if (ItemState(current), ItemState(target)) in HUMAN_ONLY and not (human_decision and reason):
        # DESIGN.md section 3: unscannable "needs a recorded human decision".
        raise IllegalTransition(item.id, current, target)
    item.state = target
    item.state_reason = reason[:1000] if reason else None
    item.updated_at = utcnow()
    session.add(item)
    event_detail: dict[str, Any] = {"from": current, "to": str(target)}
    if reason:
        event_detail["reason"] = reason
    if human_decision:
        event_detail["human_decision"] = True
    if detail:
        event_detail.update(detail)
    return ledger.append(
        db,
        session,
        actor=actor,
        action=f"item.{target}",
        subject=f"item:{item.id}",
        report_id=item.report_id,
        item_id=item.id,
        detail=event_detail,
        request_id=request_id,
    )
