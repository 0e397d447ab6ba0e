"""The tus door over every blob store backend (filesystem, S3 through moto over HTTP):
appends that cross S3's 5 MiB part minimum, and a resume on a fresh node whose store
instance and hash state are new (the hash then comes from the sealed object)."""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from storage.db import Database
from storage.models import EvidenceItem
from storage.settings import Settings
from tests.fixtures.blobs import StoreFactory
from tests.fixtures.upload import UploadEnv, jpeg_bytes, make_env
from upload_api.app import create_app

pytestmark = pytest.mark.anyio


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    # One database is enough here: the backends are what this module varies.
    from storage.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'stores.db'}"
    upgrade(url)
    db = Database(url)
    yield db
    db.dispose()


def headers(env: UploadEnv, length: int) -> dict[str, str]:
    meta = {"filename": "v.jpg", "filetype": "image/jpeg", "submission": env.link.submission.id}
    return {"Upload-Length": str(length),
            "Upload-Metadata": ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in meta.items())}


def patch_headers(offset: int) -> dict[str, str]:
    return {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}


async def test_patches_across_part_boundaries_and_a_fresh_node_finish_with_the_right_hash(
    sqlite_db: Database, tmp_path: Path, blob_settings: Settings, blob_store_factory: StoreFactory
) -> None:
    data = jpeg_bytes(13_000_000, 5)
    env = make_env(sqlite_db, tmp_path, store=blob_store_factory(), settings=blob_settings)
    cuts = [0, 3_000_000, 6_000_000, 9_500_000]
    async with env.client() as c:
        r = await c.post("/u/files/", headers=headers(env, len(data)))
        url = r.headers["location"]
        for start, end in itertools.pairwise(cuts):
            r = await c.patch(url, headers=patch_headers(start), content=data[start:end])
            assert r.status_code == 204, r.text
        assert (await c.head(url)).headers["upload-offset"] == str(cuts[-1])
    # A new node: new app, new store instance, no hash state.
    env.app = create_app(env.settings, env.db, blob_store_factory(), secret=env.secret)
    async with env.client() as c:
        assert (await c.head(url)).headers["upload-offset"] == str(cuts[-1])
        r = await c.patch(url, headers=patch_headers(cuts[-1]), content=data[cuts[-1]:])
        assert r.status_code == 204, r.text
    with env.db.read() as s:
        item = s.exec(select(EvidenceItem)).one()
    assert item.sha256 == hashlib.sha256(data).hexdigest()
    assert item.size == len(data)
    assert item.detected_type == "image/jpeg"
