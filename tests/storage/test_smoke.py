from storage import ledger
from storage.db import Database


def test_ledger_append_and_verify(db: Database) -> None:
    with db.write() as s:
        ledger.append(db, s, actor="test", action="report.created", subject="report:x")
        ledger.append(db, s, actor="test", action="report.created", subject="report:y")
    result = ledger.verify(db)
    assert result.ok and result.count == 2
