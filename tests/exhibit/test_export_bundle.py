"""`exhibit export` and `exhibit verify-bundle` (issue 13 items 1 and 2), on SQLite and
PostgreSQL with the real filesystem store: the bundle a defence expert receives checks
with `sha256sum -c` and `openssl`, and every tampering is named by verify-bundle."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from storage import ledger
from storage.blobs.filesystem import FilesystemBlobStore
from storage.bundle_verify import verify_bundle
from storage.db import Database
from storage.models import CustodyEvent, EvidenceItem, Report
from storage.reports import get_report_by_reference
from tests.exhibit.test_cli import Cli
from tests.fixtures.evidence import Seeded, seed_item
from tests.fixtures.postgres import PostgresCluster

REF = "CRIME/2026/0007"
HOSTILE_NAME = '../../etc/<script>alert(1)</script>\n"dash.jpg'


@dataclass
class Exported:
    cli: Cli
    db: Database
    path: Path
    public_key: str
    photo: Seeded
    video: Seeded
    declined: Seeded
    infected: Seeded
    data: dict[str, object]


def _received(db: Database, report: Report, seeded: Seeded) -> None:
    with db.write() as session:
        ledger.append(db, session, actor="citizen", action="item.received", subject=f"item:{seeded.item.id}",
                      report_id=report.id, item_id=seeded.item.id,
                      detail={"sha256": seeded.item.sha256, "size": seeded.item.size,
                              "filename": seeded.item.original_filename})


def _other_report_event(db: Database, report: Report, secret: str) -> None:
    with db.write() as session:
        ledger.append(db, session, actor="officer@other", action="item.viewed", subject="item:x",
                      report_id=report.id, detail={"filename": secret})


@pytest.fixture
def cli(tmp_path: Path, db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch) -> Cli:
    # ``db``: start from the migrated template (see tests/exhibit/test_cli.py's ``cli``).
    c = Cli(tmp_path / "data", db_url, monkeypatch)
    assert c.json("db", "upgrade")["ok"] is True
    return c


@pytest.fixture
def exported(cli: Cli, tmp_path: Path, tiny_mp4: bytes) -> Exported:
    return _export(cli, tmp_path, tiny_mp4)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def exported_once(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                  tiny_mp4: bytes) -> Iterator[Exported]:
    """One export per database for the whole module, for tests that only read the bundle
    (the tampering cases change a copy of it, never the bundle or the database): 28
    migrations, seedings and exports became 2."""
    root = tmp_path_factory.mktemp("exported")
    cluster: PostgresCluster | None = None
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'exhibit.db'}"
    else:
        cluster = request.getfixturevalue("pg_cluster")
        url = cluster.create_database()
    monkeypatch = pytest.MonkeyPatch()
    try:
        cli = Cli(root / "data", url, monkeypatch)
        assert cli.json("db", "upgrade")["ok"] is True
        yield _export(cli, root, tiny_mp4)
    finally:
        monkeypatch.undo()
        if cluster is not None:
            cluster.drop_database(url)


def _export(cli: Cli, tmp_path: Path, tiny_mp4: bytes) -> Exported:
    cli.json("reports", "create", REF, "--kind", "crime", "--title", "Burglary <b>bold</b>")
    cli.json("reports", "create", "OTHER/1", "--kind", "other")
    db = Database(cli.env["EXHIBIT_DATABASE_URL"])
    store = FilesystemBlobStore(tmp_path / "data" / "blobs")
    with db.read() as session:
        report = get_report_by_reference(session, REF)
        other = get_report_by_reference(session, "OTHER/1")
        session.expunge_all()
    photo = seed_item(db, store, report, filename=HOSTILE_NAME)
    _received(db, report, photo)
    _other_report_event(db, other, "SECRET-OF-ANOTHER-REPORT")
    video = seed_item(db, store, report, media="video", mp4=tiny_mp4, filename="dashcam.mp4")
    _received(db, report, video)
    declined = seed_item(db, store, report, filename="irrelevant.jpg")
    with db.write() as session:
        row = session.get(EvidenceItem, declined.item.id)
        assert row is not None
        row.triage, row.triage_reason = "declined", "not relevant"
    _received(db, report, declined)
    infected = seed_item(db, store, report, state="infected", filename="eicar.jpg")
    _received(db, report, infected)
    _other_report_event(db, other, "ANOTHER-SECRET")
    key = ledger.public_key_b64(ledger.load_or_create_signing_key(tmp_path / "data" / "keys" / "ledger-ed25519.pem"))
    out = tmp_path / "bundle.zip"
    data = cli.json("export", REF, "--with-derivatives", "--reason", "CPS file for trial", "--out", str(out))
    try:
        return Exported(cli, db, out, key, photo, video, declined, infected, data)
    finally:
        db.dispose()


def _verify(e: Exported, path: Path | None = None, code: int = 0) -> dict[str, object]:
    result: dict[str, object] = e.cli.json("verify-bundle", str(path or e.path), "--public-key", e.public_key, code=code)
    return result


def test_an_untouched_bundle_verifies_with_standard_tools_and_verify_bundle(exported: Exported, tmp_path: Path) -> None:
    e = exported
    assert _verify(e)["ok"] is True
    # The custody event: who, why and the bundle's SHA-256.
    db = Database(e.cli.env["EXHIBIT_DATABASE_URL"])
    try:
        with db.read() as session:
            events = list(session.exec(select(CustodyEvent).where(
                CustodyEvent.action == "export.created")).scalars())  # type: ignore[call-overload,arg-type]
    finally:
        db.dispose()
    assert len(events) == 1
    detail = events[0].detail or {}
    assert detail["reason"] == "CPS file for trial"
    assert detail["bundle_sha256"] == hashlib.sha256(e.path.read_bytes()).hexdigest() == e.data["sha256"]
    assert events[0].actor.startswith("cli")

    # sha256sum -c and openssl, in the unzipped folder, nothing else.
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(e.path) as zf:
        zf.extractall(folder)
        infos = {i.filename: i for i in zf.infolist()}
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True, check=False)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    assert sums.stdout.count(": OK") == len(infos) - 1
    ssl = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "custody/ledger-public-key.pem",
                          "-rawin", "-in", "custody/checkpoint-signed.json", "-sigfile", "custody/checkpoint.sig"],
                         cwd=folder, capture_output=True, text=True, check=False)
    assert ssl.returncode == 0 and "Signature Verified Successfully" in ssl.stdout, ssl.stdout + ssl.stderr

    # Originals stored byte for byte, not deflated; server-made names only.
    photo_name = next(n for n in infos if n.startswith(f"originals/{e.photo.item.id}_"))
    assert "/" not in photo_name.removeprefix("originals/") and ".." not in photo_name and "\n" not in photo_name
    assert infos[photo_name].compress_type == zipfile.ZIP_STORED
    assert (folder / photo_name).read_bytes() == e.photo.original
    assert (folder / f"originals/{e.video.item.id}_dashcam.mp4").read_bytes() == e.video.original
    assert any(n.startswith(f"derivatives/{e.video.item.id}_proxy") for n in infos)
    # Declined: listed with state and hash, no bytes. Infected: not there at all.
    assert not any(e.declined.item.id in n or e.infected.item.id in n for n in infos)
    manifest = json.loads((folder / "manifest.json").read_text())
    by_id = {i["id"]: i for i in manifest["items"]}
    assert by_id[e.declined.item.id]["file"] is None
    assert by_id[e.declined.item.id]["sha256_at_ingest"] == e.declined.item.sha256
    assert "declined" in by_id[e.declined.item.id]["not_included_because"]
    assert "infected" in by_id[e.infected.item.id]["not_included_because"]
    assert by_id[e.video.item.id]["derivatives"][0]["tool"] == "test"
    # Nothing of another report: its events are there as hashes only.
    everything = b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
    assert b"SECRET-OF-ANOTHER-REPORT" not in everything and b"ANOTHER-SECRET" not in everything
    # The continuity statement escapes what citizens typed.
    page = (folder / "continuity.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page and "<b>bold" not in page
    assert e.photo.item.sha256 in page


def _rewrite(src: Path, dst: Path, change: Callable[[dict[str, bytes]], None]) -> Path:
    with zipfile.ZipFile(src) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    change(members)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    dst.write_bytes(buf.getvalue())
    return dst


def _flip(members: dict[str, bytes], prefix: str) -> str:
    name = next(n for n in members if n.startswith(prefix))
    data = bytearray(members[name])
    data[len(data) // 2] ^= 0x01
    members[name] = bytes(data)
    return name


def _lines(members: dict[str, bytes]) -> list[dict[str, object]]:
    return [json.loads(line) for line in members["custody/events.jsonl"].splitlines()]


def _set_lines(members: dict[str, bytes], lines: list[dict[str, object]]) -> None:
    members["custody/events.jsonl"] = b"".join(ledger.canonical_json(x) + b"\n" for x in lines)


def _edit_event(m: dict[str, bytes]) -> str:
    lines = _lines(m)
    i = next(i for i, x in enumerate(lines) if x.get("action") == "item.received")
    lines[i]["actor"] = "someone else"
    _set_lines(m, lines)
    return f"event {lines[i]['seq']} was edited"


def _remove_event(m: dict[str, bytes]) -> str:
    lines = _lines(m)
    i = next(i for i, x in enumerate(lines) if x.get("action") == "item.received" and i > 0)
    seq = lines[i]["seq"]
    del lines[i]
    _set_lines(m, lines)
    return f"event {seq} is missing"


def _reorder_events(m: dict[str, bytes]) -> str:
    lines = _lines(m)
    lines[1], lines[2] = lines[2], lines[1]
    _set_lines(m, lines)
    return "reordered"


def _add_event(m: dict[str, bytes]) -> str:
    lines = _lines(m)
    lines.insert(2, dict(lines[1]))
    _set_lines(m, lines)
    return "appears twice"


def _cut_proof(m: dict[str, bytes]) -> str:
    _set_lines(m, _lines(m)[:-1])
    return "does not reach the signed checkpoint"


def _other_key(m: dict[str, bytes]) -> str:
    doc = json.loads(m["custody/checkpoint.json"])
    other = Ed25519PrivateKey.generate()
    doc["public_key"] = ledger.public_key_b64(other)
    doc["signature"] = base64.b64encode(other.sign(ledger.canonical_json(doc["signed"]))).decode()
    m["custody/checkpoint.json"] = json.dumps(doc).encode()
    return "signed by another key"


def _bad_signature(m: dict[str, bytes]) -> str:
    doc = json.loads(m["custody/checkpoint.json"])
    doc["signature"] = base64.b64encode(b"\x00" * 64).decode()
    m["custody/checkpoint.json"] = json.dumps(doc).encode()
    return "signature does not verify"


def _resum_after_flip(m: dict[str, bytes]) -> str:
    # Flip a byte of an original AND rewrite SHA256SUMS to match: the signature still
    # holds the true hash.
    name = _flip(m, "originals/")
    sums = m["SHA256SUMS"].decode().splitlines()
    fixed = [f"{hashlib.sha256(m[name]).hexdigest()}  {name}" if line.endswith(f"  {name}") else line for line in sums]
    m["SHA256SUMS"] = ("\n".join(fixed) + "\n").encode()
    return f"{SUMS_SIGNED_MSG} for {name}"


SUMS_SIGNED_MSG = "SHA256SUMS differs from what the ledger key signed"


def _extra(m: dict[str, bytes]) -> str:
    m["originals/planted.jpg"] = b"not evidence"
    return "extra file not listed in SHA256SUMS: originals/planted.jpg"


def _missing(m: dict[str, bytes]) -> str:
    name = next(n for n in m if n.startswith("derivatives/"))
    del m[name]
    return f"file missing: {name}"


TAMPERS: dict[str, Callable[[dict[str, bytes]], str]] = {
    "original byte": lambda m: f"file changed: {_flip(m, 'originals/')}",
    "derivative byte": lambda m: f"file changed: {_flip(m, 'derivatives/')}",
    "manifest byte": lambda m: f"file changed: {_flip(m, 'manifest.json')}",
    "statement byte": lambda m: f"file changed: {_flip(m, 'continuity.html')}",
    "event edited": _edit_event,
    "event removed": _remove_event,
    "events reordered": _reorder_events,
    "event added": _add_event,
    "proof cut short": _cut_proof,
    "signed by another key": _other_key,
    "signature replaced": _bad_signature,
    "sums rewritten": _resum_after_flip,
    "file added": _extra,
    "file missing": _missing,
}


@pytest.mark.parametrize("case", list(TAMPERS))
def test_each_tampering_is_named(exported_once: Exported, tmp_path: Path, case: str) -> None:
    expected: list[str] = []

    def change(m: dict[str, bytes]) -> None:
        expected.append(TAMPERS[case](m))

    bad = _rewrite(exported_once.path, tmp_path / "bad.zip", change)
    result = _verify(exported_once, bad, code=1)
    assert result["ok"] is False
    problems = result["problems"]
    assert isinstance(problems, list)
    assert any(expected[0] in p for p in problems), (expected, problems)


def test_verify_bundle_needs_a_pinned_key_and_no_database(exported: Exported, tmp_path: Path) -> None:
    offline = Cli(tmp_path / "elsewhere", "postgresql://nobody@127.0.0.1:1/none", exported.cli.monkeypatch)
    out = offline.json("verify-bundle", str(exported.path), code=2)
    assert out["error"]["code"] == "ERR_CHECKPOINT_UNPINNED"
    # The installed command, on a machine whose database URL leads nowhere.
    proc = offline.run("verify-bundle", str(exported.path), "--public-key", exported.public_key, real=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "bundle intact" in proc.stdout


def test_export_requires_a_reason_and_refuses_items_of_another_report(cli: Cli, tmp_path: Path) -> None:
    cli.json("reports", "create", "R-1", "--kind", "other")
    out = cli.json("export", "R-1", "--reason", "  ", "--out", str(tmp_path / "x.zip"), code=2)
    assert out["error"]["code"] == "ERR_REASON_REQUIRED"
    out = cli.json("export", "R-1", "--items", "f" * 32, "--reason", "court", "--out", str(tmp_path / "x.zip"), code=2)
    assert out["error"]["code"] == "ERR_ITEM_NOT_FOUND"
    assert not (tmp_path / "x.zip").exists()


def test_infected_items_only_on_request_and_apart_with_a_warning(exported: Exported, tmp_path: Path) -> None:
    out = tmp_path / "with-infected.zip"
    exported.cli.json("export", REF, "--items", exported.infected.item.id, "--include-infected",
                      "--reason", "malware analysis by the defence expert", "--out", str(out))
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        assert f"infected/{exported.infected.item.id}_eicar.jpg" in names
        assert "WARNING" in zf.read("infected/WARNING.txt").decode()
        assert not any(n.startswith("originals/") for n in names)
        manifest = json.loads(zf.read("manifest.json"))
    assert [i["id"] for i in manifest["items"]] == [exported.infected.item.id]
    assert _verify(exported, out)["ok"] is True


def _max_rss_kib(cli: Cli, *args: str) -> int:
    """Peak resident memory of one real `exhibit` process (KiB), as the kernel counts it."""
    import sys

    script = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    exe = str(Path(sys.executable).parent / "exhibit")
    proc = subprocess.run([sys.executable, "-c", script, exe, *args], env=cli.env, capture_output=True, text=True,
                          check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip())


# Memory of the export process: the database does not change it, so one database is enough
# (a parametrize mark, not a skip: nothing in the run is skipped).
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_5_gib_export_is_zip64_verifies_and_keeps_memory_flat(cli: Cli, tmp_path: Path, db_url: str) -> None:
    import asyncio


    cli.json("reports", "create", "BIG/1", "--kind", "other")
    cli.json("reports", "create", "SMALL/1", "--kind", "other")
    db = Database(db_url)
    store = FilesystemBlobStore(tmp_path / "data" / "blobs")
    try:
        with db.read() as session:
            big = get_report_by_reference(session, "BIG/1")
            small = get_report_by_reference(session, "SMALL/1")
            session.expunge_all()
        seed_item(db, store, small, state="clean", derivatives={})
        # 5 GiB: past zip's 4 GiB limits (member size and offsets), so the bundle must be
        # zip64 end to end. A sparse file keeps the disk cost of the setup near zero; the
        # export still reads, hashes and writes every one of its 5 GiB.
        size = 5 << 30

        async def put() -> str:
            upload = await store.create("originals", size)
            os.truncate(store._incoming_path(upload.key), size)  # test setup: sparse bytes
            await upload.finish()
            return upload.key

        key = asyncio.run(put())
        # The SHA-256 of 5 GiB of zero bytes (`head -c 5G /dev/zero | sha256sum`), written
        # down rather than hashed again here: the export checks every byte it copies against
        # it (ERR_INTEGRITY otherwise), so a wrong constant fails this test, never weakens it.
        zeros_sha256 = "7f06c62352aebd8125b2a1841e2b9e1ffcbed602f381c3dcb3200200e383d1d5"
        with db.write() as session:
            session.add(EvidenceItem(report_id=big.id, blob_key=key, size=size, sha256=zeros_sha256,
                                     verified_sha256=zeros_sha256, original_filename="big.mp4", state="clean"))
    finally:
        db.dispose()
    baseline = _max_rss_kib(cli, "export", "SMALL/1", "--reason", "r", "--out", str(tmp_path / "small.zip"))
    big_zip = tmp_path / "big.zip"
    try:
        peak = _max_rss_kib(cli, "export", "BIG/1", "--reason", "r", "--out", str(big_zip))
        # Holding the original (or the zip) in memory would add gigabytes.
        assert peak - baseline < 48 * 1024, (baseline, peak)
        with zipfile.ZipFile(big_zip) as zf:
            [original] = [i for i in zf.infolist() if i.filename.startswith("originals/")]
            assert original.file_size == size and original.compress_type == zipfile.ZIP_STORED
            # Members written after the original start past 4 GiB: zip64 offsets.
            assert max(i.header_offset for i in zf.infolist()) > 1 << 32
        key_b64 = ledger.public_key_b64(ledger.load_or_create_signing_key(
            tmp_path / "data" / "keys" / "ledger-ed25519.pem"))
        report = verify_bundle(big_zip, key_b64)
        assert report.ok, report.problems
    finally:
        big_zip.unlink(missing_ok=True)


def test_export_refuses_to_sign_over_a_broken_ledger(cli: Cli, tmp_path: Path) -> None:
    from tests.fixtures.tamper import tamper

    cli.json("reports", "create", "R-1", "--kind", "other")
    cli.json("reports", "create", "R-2", "--kind", "other")
    tamper(cli.env["EXHIBIT_DATABASE_URL"], "UPDATE custody_event SET actor = 'forger' WHERE seq = 1")
    out = cli.json("export", "R-2", "--reason", "court", "--out", str(tmp_path / "x.zip"), code=1)
    assert out["first_bad_seq"] == 1
    assert not (tmp_path / "x.zip").exists() and not list(tmp_path.glob(".x.zip*"))
