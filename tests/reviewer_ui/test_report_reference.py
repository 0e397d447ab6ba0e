"""Creating a report whose reference exists (i11 item 5): the answer must not tell an
officer that someone else's report exists (AC-01). If they may see it, they get a link
to it; if not, the same answer as any invalid reference, and the probe is recorded."""

from __future__ import annotations

import threading

from sqlmodel import select

from storage.models import Report
from tests.fixtures.casework import Casework


def _error_of(html: str) -> str:
    return html.split('role="alert"', 1)[1].split("</div>", 1)[0]


def test_a_reference_taken_by_a_hidden_report_gets_the_invalid_input_answer(casework: Casework) -> None:
    owner, stranger = casework.user("officer"), casework.user("officer")
    hidden = casework.report(owner, "CRIME/2026/SECRET")
    client = casework.client(stranger)
    invalid = client.post("/reports", {"reference": "../bad", "kind": "crime"})
    taken = client.post("/reports", {"reference": "CRIME/2026/SECRET", "kind": "crime"})
    assert invalid.status_code == taken.status_code == 400
    assert _error_of(invalid.text) == _error_of(taken.text)
    assert hidden.id not in taken.text and "already exists" not in taken.text
    [denied] = casework.events("access.denied")
    assert denied.actor == stranger.email and denied.detail is not None
    assert denied.detail["reason"] == "report.create.reference_taken"
    with casework.db.read() as session:
        assert len(list(session.exec(select(Report).where(Report.reference == "CRIME/2026/SECRET")))) == 1


def test_a_reference_taken_by_a_report_the_officer_can_see_links_to_it(casework: Casework) -> None:
    owner = casework.user("officer")
    admin = casework.user("admin")
    mine = casework.report(owner, "RTC/2026/MINE")
    for user in (owner, admin):
        r = casework.client(user).post("/reports", {"reference": "RTC/2026/MINE", "kind": "rtc"})
        assert r.status_code == 409
        assert "already exists" in r.text and f'href="/reports/{mine.id}"' in r.text
    assert casework.events("access.denied") == []


def test_racing_creates_of_one_reference_never_500(casework: Casework) -> None:
    officers = [casework.user("officer") for _ in range(6)]
    clients = [casework.client(o) for o in officers]
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []
    errors: list[BaseException] = []

    def create(client: object) -> None:
        try:
            barrier.wait(timeout=30)
            statuses.append(client.post("/reports", {"reference": "RACE/1", "kind": "crime"}).status_code)  # type: ignore[attr-defined]
        except BaseException as exc:  # a 500 raises out of the TestClient
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(statuses) == [303] + [400] * (len(clients) - 1)
    with casework.db.read() as session:
        assert len(list(session.exec(select(Report).where(Report.reference == "RACE/1")))) == 1
