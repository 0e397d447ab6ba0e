"""An upload moves between nodes (issue 17 item 4, DESIGN §4): real ``exhibit serve --role
public`` processes on one PostgreSQL, sharing S3 (moto's server over HTTP) or the
filesystem store, with a tus upload whose PATCHes alternate between them. The node that
meets the upload without its hash state rebuilds the state from the stored prefix
(``read_partial``), so the hash and the type check run while the bytes stream in, not
after the fact."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.fixtures.nodes import Cluster, cluster, s3_env
from tests.fixtures.upload import jpeg_bytes

MiB = 1 << 20



@pytest.fixture(params=["s3", "filesystem"])
def two_nodes(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    if request.param == "s3":
        endpoint: str = request.getfixturevalue("s3_server")
        bucket: str = request.getfixturevalue("s3_bucket")
        storage_url, extra = f"s3://{bucket}/exhibit", s3_env(endpoint)
    else:
        # Two processes of one machine sharing the data directory's blob store.
        storage_url, extra = f"file://{tmp_path / 'blobs'}", {}
    with cluster(tmp_path / "cluster", pg_url, storage_url=storage_url, extra_env=extra) as c:
        c.start_public(2)
        yield c


def create(base: str, token: str, submission: str, length: int, name: str = "dashcam.jpg") -> str:
    def b64(value: str) -> str:
        return base64.b64encode(value.encode()).decode()

    r = httpx.post(f"{base}/u/files/", headers={
        "Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0", "Upload-Length": str(length),
        "Upload-Metadata": f"submission {b64(submission)},filename {b64(name)}"}, timeout=30)
    assert r.status_code == 201, r.text
    return str(r.headers["location"])


def patch(base: str, location: str, token: str, offset: int, body: bytes) -> httpx.Response:
    return httpx.patch(f"{base}{location}", content=body, headers={
        "Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream"}, timeout=60)


def test_a_tus_upload_alternating_between_two_nodes_ends_with_the_right_hash(two_nodes: Cluster) -> None:
    a, b = two_nodes.public
    token = two_nodes.new_link("RTC/2026/0100")
    statement = two_nodes.statement(a.url, token)
    # 3 MiB steps: on S3 the first stays carried (.part, under the 5 MiB part minimum), the
    # second makes a part, and every node in turn meets bytes the other one stored.
    data = jpeg_bytes(20 * MiB + 5, 3)
    location = create(a.url, token, statement["id"], len(data))
    offset, turn = 0, 0
    while offset < len(data):
        node = (a, b)[turn % 2]
        r = patch(node.url, location, token, offset, data[offset:offset + 3 * MiB])
        assert r.status_code == 204, (node.name, r.text)
        offset = int(r.headers["upload-offset"])
        turn += 1
    assert turn == 7
    receipt = httpx.get(f"{b.url}/u/receipt/{statement['status_token']}.json", timeout=30).json()
    assert [f["sha256"] for f in receipt["files"]] == [hashlib.sha256(data).hexdigest()]
    assert receipt["files"][0]["size"] == len(data)


def test_a_refused_type_is_caught_at_the_patch_that_shows_it_on_another_node(two_nodes: Cluster) -> None:
    """The first PATCH (on node A) is too short to judge the type; the next one goes to
    node B, which never saw the first bytes. B must rebuild what A saw and refuse the file
    there and then (UP-05), not take every byte and find out at the end."""
    a, b = two_nodes.public
    token = two_nodes.new_link("RTC/2026/0101")
    statement = two_nodes.statement(a.url, token)
    page = b"<!doctype html><html><body><script>alert(document.cookie)</script>" + b" " * 4000 + b"</body></html>"
    location = create(a.url, token, statement["id"], 64 * MiB, name="photo.jpg")
    first = patch(a.url, location, token, 0, page[:100])
    assert first.status_code == 204 and first.headers["upload-offset"] == "100"
    second = patch(b.url, location, token, 100, page[100:] + b" " * (1 * MiB))
    assert second.status_code == 415, second.text
    assert second.json()["error"]["code"] == "ERR_UNSUPPORTED_TYPE"
    # The upload is gone on every node: nothing of it can be resumed or become evidence.
    head = httpx.head(f"{a.url}{location}", headers={"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"},
                      timeout=30)
    assert head.status_code in (404, 410)
