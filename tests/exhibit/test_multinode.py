"""The scaled deployment, run (issue 16 item 1): PostgreSQL, moto's S3 server, two upload
nodes behind HAProxy configured as README "A load balancer in front of the upload nodes"
says, and a staff node. tuspy uploads through the balancer while it alternates the nodes;
one node is killed in the middle of a PATCH and the client finishes on the other; and the
staff node answers while the upload nodes are kept busy."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from tusclient import client as tus

from tests.fixtures.nodes import Cluster, Proc, cluster, s3_env, wait_for
from tests.fixtures.upload import jpeg_bytes

MiB = 1 << 20


@pytest.fixture
def deployment(tmp_path: Path, pg_url: str, s3_server: str, s3_bucket: str) -> Iterator[Cluster]:
    with cluster(tmp_path / "cluster", pg_url, storage_url=f"s3://{s3_bucket}/exhibit",
                 extra_env=s3_env(s3_server)) as c:
        c.start_public(2)
        c.start_staff()
        c.start_balancer()
        yield c


def test_tuspy_through_the_balancer_survives_a_node_killed_mid_patch(deployment: Cluster) -> None:
    c = deployment
    assert c.balancer is not None
    lb = c.balancer.url
    token = c.new_link("RTC/2026/0200")
    statement = c.statement(lb, token)
    data = jpeg_bytes(40 * MiB + 3, 5)
    killed: list[Proc] = []
    triggered = threading.Event()

    def kill_the_busy_node() -> None:
        # The node HAProxy is feeding a request right now (``scur``): killed with SIGKILL,
        # as a crashed machine would be, in the middle of that PATCH.
        busy: list[dict[str, str]] = []

        def someone_busy() -> bool:
            busy[:] = [r for r in c.balancer_servers() if int(r.get("scur") or 0) > 0]
            return bool(busy)

        wait_for(someone_busy, "a PATCH in flight", timeout=60, pause=0.002)
        node = next(p for p in c.public if p.name == busy[0]["svname"])
        node.kill()
        killed.append(node)

    killer = threading.Thread(target=kill_the_busy_node)

    class KillsHalfWay(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            chunk = super().read(size)
            # tuspy reads each chunk just before it sends its PATCH.
            if self.tell() > 16 * MiB and not triggered.is_set():
                triggered.set()
                killer.start()
            return chunk

    uploader = tus.TusClient(f"{lb}/u/files/", headers={"Authorization": f"Bearer {token}"}).uploader(
        file_stream=KillsHalfWay(data), chunk_size=4 * MiB, retries=10, retry_delay=0.5,
        metadata={"submission": statement["id"], "filename": "dashcam.jpg", "filetype": "image/jpeg"})
    uploader.upload()
    killer.join(timeout=60)

    assert len(killed) == 1 and not killed[0].alive()
    survivor = next(p for p in c.public if p is not killed[0])
    assert survivor.alive()
    served = {r["svname"]: int(r["stot"]) for r in c.balancer_servers()}
    assert all(served[p.name] > 0 for p in c.public), served  # the balancer did alternate
    receipt = httpx.get(f"{lb}/u/receipt/{statement['status_token']}.json", timeout=30).json()
    assert [f["sha256"] for f in receipt["files"]] == [hashlib.sha256(data).hexdigest()]


def test_the_staff_node_answers_while_the_upload_nodes_are_busy(deployment: Cluster) -> None:
    c = deployment
    assert c.balancer is not None and c.staff is not None
    lb = c.balancer.url
    token = c.new_link("RTC/2026/0201")
    statement = c.statement(lb, token)
    errors: list[BaseException] = []
    done = threading.Event()

    def keep_uploading(seed: int) -> None:
        try:
            while not done.is_set():
                data = jpeg_bytes(6 * MiB, seed)
                uploader = tus.TusClient(f"{lb}/u/files/", headers={"Authorization": f"Bearer {token}"}).uploader(
                    file_stream=io.BytesIO(data), chunk_size=2 * MiB,
                    metadata={"submission": statement["id"], "filename": f"{seed}.jpg"})
                uploader.upload()
                seed += 100
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    uploaders = [threading.Thread(target=keep_uploading, args=(i,)) for i in range(6)]
    for t in uploaders:
        t.start()
    try:
        # Both upload nodes have requests in hand before the staff pages are asked for.
        wait_for(lambda: all(int(r["stot"]) >= 3 for r in c.balancer_servers()), "the upload nodes busy")
        for _ in range(5):
            r = httpx.get(f"{c.staff.url}/login", timeout=10)
            assert r.status_code == 200 and "password" in r.text.lower()
    finally:
        done.set()
        for t in uploaders:
            t.join(timeout=120)
    assert not errors, errors
