"""S3-only behaviour of the blob store: Object Lock, what lands in the bucket, crash
states of the carried ``.part``. Against moto's server over HTTP (tests.fixtures.s3)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import anyio
import pytest
from botocore.exceptions import ClientError

from storage.blobs import BlobNotFound, BlobStoreError, InvalidKey, open_store, put_bytes, read_all
from storage.blobs.s3 import S3BlobStore
from storage.settings import Settings
from tests.fixtures.blobs import StreamBroke, broken_stream, sha256, stream
from tests.fixtures.s3 import PREFIX

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client

pytestmark = pytest.mark.anyio

MiB = 1 << 20


def s3_store(settings: Settings) -> S3BlobStore:
    store = open_store(settings)
    assert isinstance(store, S3BlobStore)
    return store


@pytest.fixture
def lock_store(s3_lock_settings: Settings) -> Iterator[S3BlobStore]:
    store = s3_store(s3_lock_settings)
    yield store
    store.close_sync()


@pytest.fixture
def plain_store(s3_settings: Settings) -> Iterator[S3BlobStore]:
    store = s3_store(s3_settings)
    yield store
    store.close_sync()


def names_in(client: S3Client, bucket: str) -> list[str]:
    listed = client.list_objects_v2(Bucket=bucket)
    return sorted(obj["Key"] for obj in listed.get("Contents", []))


async def write_original(store: S3BlobStore, data: bytes) -> str:
    upload = await store.create("originals", len(data))
    await upload.write(0, stream(data))
    await upload.finish()
    return upload.key


# -- Object Lock ----------------------------------------------------------------------


async def test_object_lock_is_discovered_at_start_and_described(
    lock_store: S3BlobStore, plain_store: S3BlobStore
) -> None:
    assert await lock_store.describe() == {
        "backend": "s3",
        "object_lock": True,
        "retention_mode": "COMPLIANCE",
        "retention_days": 30,
        "locked_namespaces": ["originals", "checkpoints", "quarantine"],
    }
    assert await plain_store.describe() == {"backend": "s3", "object_lock": False}


def test_start_up_logs_the_object_lock_capability(s3_lock_settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="storage.blobs"):
        store = s3_store(s3_lock_settings)
    store.close_sync()
    lock_records = [r for r in caplog.records if r.getMessage() == "blobs.s3.object_lock"]
    assert lock_records and lock_records[0].__dict__["object_lock"] is True
    opened = [r for r in caplog.records if r.getMessage() == "blobs.opened"]
    assert opened and opened[0].__dict__["blobs"]["object_lock"] is True
    # Nothing identifying the bucket or endpoint goes into these records.
    bucket = s3_lock_settings.storage_url.split("/")[2]
    assert all(bucket not in repr(r.__dict__) for r in lock_records + opened)


@pytest.mark.parametrize("size", [0, 100, 6 * MiB + 5], ids=["empty", "small", "multipart"])
async def test_finished_originals_get_compliance_retention(
    lock_store: S3BlobStore, s3_client: S3Client, s3_lock_bucket: str, size: int
) -> None:
    data = os.urandom(size)
    key = await write_original(lock_store, data)
    name = f"{PREFIX}/{key}"
    # moto's GetObjectRetention answers 500: the lock fields come from HEAD.
    head = s3_client.head_object(Bucket=s3_lock_bucket, Key=name)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    retain_until = head["ObjectLockRetainUntilDate"]
    assert retain_until > dt.datetime.now(dt.UTC) + dt.timedelta(days=29)
    with pytest.raises(ClientError) as refused:
        s3_client.delete_object(Bucket=s3_lock_bucket, Key=name, VersionId=head["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert sha256(await read_all(lock_store, key)) == sha256(data)


@pytest.mark.parametrize("size", [100, 6 * MiB + 5], ids=["small", "multipart"])
async def test_an_infected_original_moved_to_quarantine_stays_locked(
    lock_store: S3BlobStore, s3_client: S3Client, s3_lock_bucket: str, size: int
) -> None:
    """On an Object Lock bucket the quarantine copy of an infected original is locked in
    COMPLIANCE mode like the original was, before the original's name is dropped, so the
    evidence is never without a lock (a malware sample is still evidence)."""
    data = os.urandom(size)
    key = await write_original(lock_store, data)
    target = await lock_store.quarantine_copy(key)
    await lock_store.quarantine_drop(key)
    head = s3_client.head_object(Bucket=s3_lock_bucket, Key=f"{PREFIX}/{target}")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > dt.datetime.now(dt.UTC) + dt.timedelta(days=29)
    with pytest.raises(ClientError) as refused:
        s3_client.delete_object(Bucket=s3_lock_bucket, Key=f"{PREFIX}/{target}", VersionId=head["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert sha256(b"".join([c async for c in lock_store.read_quarantined(target)])) == sha256(data)
    assert await lock_store.quarantine_copy(key) == target  # a retried move finds it done


async def test_derivatives_are_not_locked(lock_store: S3BlobStore, s3_client: S3Client, s3_lock_bucket: str) -> None:
    key = await put_bytes(lock_store, b"a thumbnail", "derivatives")
    head = s3_client.head_object(Bucket=s3_lock_bucket, Key=f"{PREFIX}/{key}")
    assert "ObjectLockMode" not in head
    s3_client.delete_object(Bucket=s3_lock_bucket, Key=f"{PREFIX}/{key}", VersionId=head["VersionId"])


async def test_without_object_lock_originals_carry_no_retention(
    plain_store: S3BlobStore, s3_client: S3Client, s3_bucket: str
) -> None:
    key = await write_original(plain_store, b"evidence")
    head = s3_client.head_object(Bucket=s3_bucket, Key=f"{PREFIX}/{key}")
    assert "ObjectLockMode" not in head


async def test_finishing_again_relocks_an_original_that_missed_its_retention(
    s3_server: str, s3_client: S3Client, s3_lock_bucket: str, s3_lock_settings: Settings
) -> None:
    # The crash window between CompleteMultipartUpload and PutObjectRetention, staged
    # with a store that does not see the lock; a finish retried by a store that does
    # must lock the object.
    blind = S3BlobStore(bucket=s3_lock_bucket, prefix=PREFIX, endpoint_url=s3_server, retention_days=0)
    key = await write_original(blind, b"evidence")
    blind.close_sync()
    name = f"{PREFIX}/{key}"
    assert "ObjectLockMode" not in s3_client.head_object(Bucket=s3_lock_bucket, Key=name)
    store = s3_store(s3_lock_settings)
    try:
        info = await (await store.get(key)).finish()
    finally:
        store.close_sync()
    assert info.finished and info.offset == len(b"evidence")
    assert s3_client.head_object(Bucket=s3_lock_bucket, Key=name)["ObjectLockMode"] == "COMPLIANCE"


# -- what lands in the bucket ---------------------------------------------------------


async def test_objects_live_under_the_prefix_and_bookkeeping_is_removed(
    plain_store: S3BlobStore, s3_client: S3Client, s3_bucket: str
) -> None:
    upload = await plain_store.create("originals", 7 * MiB)
    await upload.write(0, stream(os.urandom(3 * MiB)))  # too few for a part: carried
    listed = names_in(s3_client, s3_bucket)
    assert listed == [f"{PREFIX}/.uploads/{upload.key}.info", f"{PREFIX}/.uploads/{upload.key}.part"]
    await upload.write(3 * MiB, stream(os.urandom(4 * MiB)))
    await upload.finish()
    assert names_in(s3_client, s3_bucket) == [f"{PREFIX}/{upload.key}"]
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


async def test_terminate_leaves_nothing_behind(plain_store: S3BlobStore, s3_client: S3Client, s3_bucket: str) -> None:
    upload = await plain_store.create("originals")
    await upload.write(0, stream(os.urandom(9 * MiB)))
    await upload.terminate()
    assert names_in(s3_client, s3_bucket) == []
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


async def test_a_part_object_already_sent_as_a_part_is_not_counted_twice(
    plain_store: S3BlobStore, s3_client: S3Client, s3_bucket: str
) -> None:
    # Stage the crash window of a write: the carried bytes went out in part 1, and the
    # process died before it replaced the .part object.
    data = os.urandom(9 * MiB)
    upload = await plain_store.create("originals", len(data))
    with pytest.raises(StreamBroke):
        await upload.write(0, broken_stream(data, 3 * MiB))
    assert (await upload.info()).offset == 3 * MiB
    info_obj = s3_client.get_object(Bucket=s3_bucket, Key=f"{PREFIX}/.uploads/{upload.key}.info")
    upload_id = json.loads(info_obj["Body"].read())["upload_id"]
    s3_client.upload_part(
        Bucket=s3_bucket,
        Key=f"{PREFIX}/{upload.key}",
        UploadId=upload_id,
        PartNumber=1,
        Body=data[: 6 * MiB],
    )
    assert (await upload.info()).offset == 6 * MiB  # not 9 MiB: the .part is stale
    await upload.write(6 * MiB, stream(data[6 * MiB :]))
    await upload.finish()
    assert sha256(await read_all(plain_store, upload.key)) == sha256(data)


# -- errors ---------------------------------------------------------------------------


async def test_an_s3_failure_mid_write_is_reported_not_thrown_into_the_stream(
    plain_store: S3BlobStore, s3_client: S3Client, s3_bucket: str
) -> None:
    upload = await plain_store.create("originals")
    await upload.write(0, stream(os.urandom(MiB)))
    upload_id = json.loads(
        s3_client.get_object(Bucket=s3_bucket, Key=f"{PREFIX}/.uploads/{upload.key}.info")["Body"].read()
    )["upload_id"]
    thrown_in: list[type[BaseException]] = []

    async def aborted_behind_the_stores_back() -> AsyncIterator[bytes]:
        try:
            s3_client.abort_multipart_upload(Bucket=s3_bucket, Key=f"{PREFIX}/{upload.key}", UploadId=upload_id)
            async for chunk in stream(os.urandom(10 * MiB)):
                yield chunk
        except BaseException as exc:
            thrown_in.append(type(exc))
            raise

    with pytest.raises(BlobStoreError):
        await upload.write(MiB, aborted_behind_the_stores_back())
    assert anyio.get_cancelled_exc_class() not in thrown_in


async def test_bad_keys_make_no_request(plain_store: S3BlobStore) -> None:
    sent: list[str] = []
    plain_store._client.meta.events.register("before-send.s3", lambda **kw: sent.append(kw["request"].url))
    for key in ("../x", "originals/../../etc/passwd", "/abs", "originals\\" + "0" * 32):
        with pytest.raises(InvalidKey):
            await plain_store.get(key)
        with pytest.raises(InvalidKey):
            plain_store.read(key)
        with pytest.raises(InvalidKey):
            await plain_store.size(key)
    assert sent == []


def test_an_unreachable_bucket_fails_at_start(s3_settings: Settings) -> None:
    with pytest.raises(BlobStoreError) as caught:
        open_store(s3_settings.replace(storage_url="s3://no-such-bucket-exhibit/x"))
    assert "no-such-bucket" not in str(caught.value)
    assert isinstance(caught.value.__cause__, ClientError)


async def test_not_found_is_translated_not_leaked(plain_store: S3BlobStore) -> None:
    with pytest.raises(BlobNotFound) as caught:
        await plain_store.size("originals/" + "1" * 32)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_disposal_leaves_no_version_of_a_staged_part(
    lock_store: S3BlobStore, s3_client: S3Client, s3_lock_bucket: str,
) -> None:
    # Issue 14: a lawful disposal destroys every copy of the bytes. Each part of an
    # unfinished upload is also staged as a readable object (for a node that rebuilds the
    # hash state), and on a versioned bucket its versions would outlive the disposal.
    upload = await lock_store.create("originals", 20 * MiB)
    await upload.write(0, stream(os.urandom(9 * MiB)))
    _, hexpart = upload.key.split("/")

    def versions_of_the_upload() -> list[str]:
        listed = s3_client.list_object_versions(Bucket=s3_lock_bucket, Prefix=PREFIX)
        return [v["Key"] for v in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]
                if hexpart in v["Key"]]

    assert any(".parts/" in name for name in versions_of_the_upload())
    assert await lock_store.destroy(upload.key)
    assert versions_of_the_upload() == []
