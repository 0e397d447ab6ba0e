"""``/readyz`` tells the truth under real faults (issue 16 item 2): a PostgreSQL cluster
stopped, a store that can no longer be written (a read-only filesystem), a clamd
stopped; each gives 503 naming that part, and 200 once it is back. The public door
names parts and ok/failing only (trust boundary); the staff door adds details. A flood of
/readyz costs the database one round of probes, not one per request."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import event

from exhibit.readiness import CACHE_SECONDS
from exhibit.server import build_door
from processing.clamd_manager import ClamdManager
from storage.blobs import open_store
from storage.db import Database
from storage.migrate import upgrade
from storage.settings import Settings
from tests.fixtures.ports import free_port
from tests.fixtures.postgres import PostgresCluster, _pg_bin

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _door(settings: Settings, db: Database, door: str) -> Any:
    store = open_store(settings)
    app, _ = build_door(settings, db, store, door, health={})
    return app


async def _get(app: Any, path: str = "/readyz", client: tuple[str, int] = ("127.0.0.1", 123),
               headers: dict[str, str] | None = None) -> httpx2.Response:
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app, client=client),
                                  base_url="http://door") as http:
        return await http.get(path, headers=headers)


async def _until(app: Any, status: int, within: float = 30.0) -> httpx2.Response:
    """Poll /readyz until it answers ``status`` (its answer is cached for a second or two:
    there is no event to await)."""
    deadline = time.monotonic() + within
    while True:
        response = await _get(app)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.2)


async def test_public_door_names_parts_and_nothing_more_and_staff_door_adds_details(
        tmp_path: Path, db: Database) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=db.url, storage_url=f"file://{tmp_path / 'blobs'}")
    public = await _get(_door(settings, db, "public"))
    assert public.status_code == 200
    assert public.json() == {"ready": True, "parts": {"database": "ok", "blob_store": "ok", "queue": "ok",
                                                      "ledger": "ok"}}
    assert public.headers["cache-control"] == "no-store"

    staff = (await _get(_door(settings, db, "staff"))).json()
    assert staff["ready"] is True and set(staff["parts"]) == {"database", "blob_store", "queue", "ledger"}
    details = staff["details"]
    assert details["queue"] == {"backlog": 0, "by_state": {}, "oldest_queued_seconds": None}
    assert details["ledger"]["verifiers_failing"] == [] and details["ledger"]["last_checkpoint"] is None
    assert details["fixity"] == {"alarms": 0}
    # /healthz stays bare on the public door.
    assert (await _get(_door(settings, db, "public"), "/healthz")).json() == {"ok": True}


async def test_staff_readyz_details_only_for_the_metrics_allow_list(tmp_path: Path, db: Database) -> None:
    # AC-17: failing verifiers with their reason, fixity alarms, checkpoint, signature age
    # and backlog tell an attacker what is broken; a client of the staff door outside
    # EXHIBIT_METRICS_ALLOW (a partner behind the same proxy) sees names and ok/failing only.
    settings = Settings(data_dir=tmp_path / "data", database_url=db.url, storage_url=f"file://{tmp_path / 'blobs'}",
                        trusted_proxies=("10.0.0.2",), metrics_allow=("10.9.0.0/16",))
    staff = _door(settings, db, "staff")
    for client, headers in ((("10.1.2.3", 4000), None), (("127.0.0.1", 4000), None),
                            (("10.0.0.2", 4000), {"X-Forwarded-For": "10.1.2.3"}),
                            (("203.0.113.9", 4000), {"X-Forwarded-For": "10.9.1.1"})):  # forged: untrusted peer
        outsider = await _get(staff, client=client, headers=headers)
        assert outsider.status_code == 200
        assert outsider.json() == {"ready": True, "parts": {"database": "ok", "blob_store": "ok", "queue": "ok",
                                                            "ledger": "ok"}}, client
    for client, headers in ((("10.9.4.4", 4000), None), (("10.0.0.2", 4000), {"X-Forwarded-For": "10.9.1.1"})):
        monitor = (await _get(staff, client=client, headers=headers)).json()
        assert monitor["details"]["fixity"] == {"alarms": 0} and "verifiers_failing" in monitor["details"]["ledger"]


@pytest.fixture
def own_postgres() -> Iterator[tuple[PostgresCluster, Any]]:
    """A PostgreSQL cluster of this test's own, which it may stop and start again (the
    session's cluster is shared by every other test)."""
    base = Path(tempfile.mkdtemp(prefix="exhibit-readyz-pg-"))
    subprocess.run(["chown", "-R", "postgres", str(base)], check=True)
    data, sock, port = base / "data", base / "sock", free_port()
    sock.mkdir()
    subprocess.run(["chown", "postgres", str(sock)], check=True)
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"

    def pg(*argv: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, timeout=120)

    pg(_pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")

    def ctl(action: str) -> None:
        extra = ["-o", opts, "-l", str(base / "log")] if action == "start" else ["-m", "fast"]
        pg(_pg_bin("pg_ctl"), "-D", str(data), *extra, "-w", action)

    ctl("start")
    try:
        yield PostgresCluster(host="127.0.0.1", port=port, user="postgres"), ctl
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate",
                        "-w", "stop"], capture_output=True, timeout=60)
        subprocess.run(["rm", "-rf", str(base)], check=False)


async def test_a_stopped_database_is_named_and_readiness_returns_when_it_is_back(
        tmp_path: Path, own_postgres: tuple[PostgresCluster, Any]) -> None:
    cluster, ctl = own_postgres
    url = cluster.create_database()
    upgrade(url)
    db = Database(url)
    try:
        settings = Settings(data_dir=tmp_path / "data", database_url=url, storage_url=f"file://{tmp_path / 'blobs'}")
        public, staff = _door(settings, db, "public"), _door(settings, db, "staff")
        assert (await _get(public)).status_code == 200

        ctl("stop")
        down = await _until(public, 503)
        assert down.status_code == 503
        body = down.json()
        assert "database" in body["failing"] and body["parts"]["blob_store"] == "ok"
        # The public door names the part and says nothing about why.
        assert set(body) == {"ready", "parts", "failing"}
        staff_down = (await _until(staff, 503)).json()
        assert staff_down["parts"]["database"] == "failing" and staff_down["errors"]["database"]

        ctl("start")
        assert (await _until(public, 200)).json()["ready"] is True
        assert (await _until(staff, 200)).json()["ready"] is True
    finally:
        db.dispose()


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A real filesystem of its own (tmpfs) that the test can make read-only."""
    mount = Path(tempfile.mkdtemp(prefix="exhibit-readyz-disk-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


async def test_a_store_that_cannot_be_written_is_named(tmp_path: Path, db: Database, small_disk: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=db.url, storage_url=f"file://{small_disk / 'blobs'}")
    public = _door(settings, db, "public")
    assert (await _get(public)).status_code == 200

    await asyncio.to_thread(subprocess.run, ["mount", "-o", "remount,ro", str(small_disk)], check=True)
    down = await _until(public, 503)
    assert down.json() == {"ready": False, "failing": ["blob_store"],
                           "parts": {"database": "ok", "blob_store": "failing", "queue": "ok", "ledger": "ok"}}

    await asyncio.to_thread(subprocess.run, ["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert (await _until(public, 200)).status_code == 200
    # The probe left nothing behind in the store.
    assert not [p for p in (small_disk / "blobs" / "incoming").rglob("*") if p.is_file()]


async def test_a_stopped_clamd_is_named_on_the_staff_door(tmp_path: Path, db: Database) -> None:
    root = tmp_path / "clamd"
    manager = ClamdManager(Settings(data_dir=root, clamd_database_dir=root / "clamd" / "test-db"))
    manager.test_database = True
    manager.start(supervise=False)
    try:
        settings = Settings(data_dir=tmp_path / "data", database_url=db.url,
                            storage_url=f"file://{tmp_path / 'blobs'}", clamd_address=manager.address)
        staff = _door(settings, db, "staff")
        up = (await _get(staff)).json()
        assert up["parts"]["clamd"] == "ok" and up["details"]["clamd"]["signatures"].startswith("ClamAV")
        # The public door scans nothing, and says nothing about the scanner.
        assert "clamd" not in (await _get(_door(settings, db, "public"))).text

        manager.stop()
        down = await _until(staff, 503)
        assert down.json()["failing"] == ["clamd"]

        manager.start(supervise=False)
        assert (await _until(staff, 200)).json()["parts"]["clamd"] == "ok"
    finally:
        manager.stop()


async def test_a_flood_of_readyz_costs_the_database_one_round(tmp_path: Path, db: Database) -> None:
    """300 probes at once cost the database one round of statements per cache period, not
    one per request (threat: a flood of /readyz used to load the database). Statements are
    counted as the application sends them (SQLAlchemy's cursor events), so the count is
    exact; the number of rounds allowed follows from how long the flood took, so a slow
    machine cannot fail the test and one round per request cannot pass it."""
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    settings = Settings(data_dir=tmp_path / "data", database_url=db.url, storage_url=f"file://{tmp_path / 'blobs'}")
    staff = _door(settings, db, "staff")
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=staff), base_url="http://door") as client:
            assert (await client.get("/readyz")).status_code == 200  # one round, and the pool warm
            one_round, statements = statements, 0
            assert one_round > 0
            started = time.monotonic()
            answers = await asyncio.gather(*(client.get("/readyz") for _ in range(300)))
            elapsed = time.monotonic() - started
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert {a.status_code for a in answers} == {200}
    # The warm-up's answer may still be fresh when the flood starts, or not (one round);
    # after that, at most one more round per cache period the flood lasted.
    rounds = 1 + int(elapsed // CACHE_SECONDS) + 1
    assert rounds * one_round < 300, "the flood was too slow to tell caching from none"
    assert statements <= rounds * one_round, (statements, one_round, elapsed)


async def test_an_s3_store_that_is_gone_is_named_and_back_when_it_returns(
        tmp_path: Path, db: Database, s3_settings: Settings, s3_client: Any) -> None:
    settings = s3_settings.replace(database_url=db.url)
    bucket = settings.storage_url.split("/")[2]
    public = _door(settings, db, "public")
    assert (await _get(public)).status_code == 200
    # The probe cleaned up after itself: no unfinished multipart upload is left behind.
    assert not s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads")

    leftovers = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    for entry in leftovers:
        s3_client.delete_object(Bucket=bucket, Key=entry["Key"])
    s3_client.delete_bucket(Bucket=bucket)
    down = await _until(public, 503)
    assert down.json()["failing"] == ["blob_store"]

    s3_client.create_bucket(Bucket=bucket)
    assert (await _until(public, 200)).status_code == 200


def test_signature_age_is_read_from_clamds_version_reply() -> None:
    import datetime as dt

    from exhibit.readiness import signature_age_seconds

    now = dt.datetime(2026, 12, 3, 10, 0, 0, tzinfo=dt.UTC)
    # A production database states when it was built: two days old here.
    assert signature_age_seconds("ClamAV 1.4.6/27838/Tue Dec  1 10:00:00 2026", now) == 2 * 86400
    assert signature_age_seconds("ClamAV 1.4.6/27838/Tue Dec  1 10:00:00 2026 (label)", now) == 2 * 86400
    # The project's test signatures state no date: unknown, never "fresh".
    assert signature_age_seconds("ClamAV 1.4.6", now) is None
