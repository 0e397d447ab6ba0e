"""Offline verification of an export bundle (``exhibit verify-bundle``): no database,
no network, only the zip and a public key the verifier was given.

Every problem found is named (a list, not just the first): a file whose bytes differ
from SHA256SUMS, a file missing or extra, a SHA256SUMS that differs from what the
ledger key signed, a signature by another key or one that does not verify, an event
edited, removed, added or reordered, a chain segment that does not reach the signed
head, an original whose hash differs from the one its custody event recorded.

The trusted key is only ever the one passed in (``--public-key`` or
EXHIBIT_LEDGER_PUBLIC_KEY), never the one inside the bundle: whoever altered the bundle
could have re-signed it with a key of their own (SECURITY_CHECKLIST AU-06).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import zipfile
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from storage import ledger
from storage.export import (
    CHECKPOINT,
    CHECKPOINT_SIG,
    CHECKPOINT_SIGNED,
    EVENTS,
    PUBLIC_KEY_PEM,
    SIGNATURE_FILES,
    SIGNED_TYPE,
    SUMS,
)

_SUM_LINE = re.compile(r"^([0-9a-f]{64})  ([A-Za-z0-9._/-]+)$")
CHUNK = 1 << 20


@dataclass
class BundleReport:
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0
    events_checked: int = 0
    head_seq: int | None = None
    report: str | None = None
    signer_fingerprint: str | None = None

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems, "files_checked": self.files_checked,
                "events_checked": self.events_checked, "head_seq": self.head_seq, "report": self.report,
                "signer_fingerprint": self.signer_fingerprint}


def _sha256_member(zf: zipfile.ZipFile, name: str) -> str:
    digest = hashlib.sha256()
    with zf.open(name) as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_bundle(path: Path, trusted_public_key: str) -> BundleReport:
    """Check the bundle at ``path`` against ``trusted_public_key`` (base64 raw Ed25519)."""
    rep = BundleReport()
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        rep.fail(f"not a readable zip file: {exc}")
        return rep
    with zf:
        names = [i.filename for i in zf.infolist() if not i.is_dir()]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                # Two members of one name: tools disagree which one they show.
                rep.fail(f"file appears twice in the zip: {name}")
            seen.add(name)
        # 1. SHA256SUMS: every file but itself, each byte.
        sums: dict[str, str] = {}
        if SUMS not in seen:
            rep.fail(f"file missing: {SUMS}")
        else:
            for n, raw in enumerate(zf.read(SUMS).decode("utf-8", "replace").splitlines(), 1):
                m = _SUM_LINE.match(raw)
                if m is None or m.group(2) in sums:
                    rep.fail(f"{SUMS} line {n} is malformed or repeated")
                    continue
                sums[m.group(2)] = m.group(1)
        actual: dict[str, str] = {}
        for name in sorted(seen - {SUMS}):
            if name not in sums:
                rep.fail(f"extra file not listed in {SUMS}: {name}")
                continue
            actual[name] = _sha256_member(zf, name)
            rep.files_checked += 1
            if actual[name] != sums[name]:
                rep.fail(f"file changed: {name} (SHA-256 {actual[name]}, {SUMS} says {sums[name]})")
        for name in sorted(set(sums) - seen):
            rep.fail(f"file missing: {name}")

        # 2. The signature, by the trusted key only.
        signed = _check_signature(zf, seen, trusted_public_key, rep)
        if signed is None:
            return rep
        rep.report = str(signed.get("report"))
        signed_files: dict[str, str] = dict(signed.get("files") or {})
        for name in sorted(set(signed_files) | (set(sums) - set(SIGNATURE_FILES))):
            if signed_files.get(name) != sums.get(name):
                rep.fail(f"{SUMS} differs from what the ledger key signed for {name}")
            elif name in actual and actual[name] != signed_files[name]:
                pass  # already named as a changed file above

        # 3. The custody events: each hash, the chain, the signed head.
        head = signed.get("ledger_head") or {}
        rep.head_seq = head.get("seq")
        if EVENTS in seen:
            _check_events(zf, head, rep)
        # 4. Originals against their custody record.
        if "manifest.json" in seen:
            _check_manifest(zf, seen, actual, rep)
    return rep


def _check_signature(zf: zipfile.ZipFile, seen: set[str], trusted: str, rep: BundleReport) -> dict[str, Any] | None:
    if CHECKPOINT not in seen:
        rep.fail(f"file missing: {CHECKPOINT}")
        return None
    try:
        document = json.loads(zf.read(CHECKPOINT))
        signed = document["signed"]
        pub = document["public_key"]
        signature = base64.b64decode(document["signature"], validate=True)
        if not isinstance(signed, dict) or signed.get("type") != SIGNED_TYPE:
            raise ValueError("not an export checkpoint")
    except (KeyError, TypeError, ValueError) as exc:
        rep.fail(f"{CHECKPOINT} is malformed: {exc}")
        return None
    rep.signer_fingerprint = hashlib.sha256(base64.b64decode(pub)).hexdigest() if isinstance(pub, str) else None
    if pub != trusted:
        rep.fail(f"the checkpoint is signed by another key ({pub}), not the trusted key {trusted}")
        return None
    message = ledger.canonical_json(signed)
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(trusted)).verify(signature, message)
    except (InvalidSignature, ValueError):
        rep.fail("the checkpoint's signature does not verify with the trusted key")
        return None
    # The copies for openssl must say the same as the document.
    if CHECKPOINT_SIGNED in seen and zf.read(CHECKPOINT_SIGNED) != message:
        rep.fail(f"{CHECKPOINT_SIGNED} differs from the signed checkpoint")
    if CHECKPOINT_SIG in seen and zf.read(CHECKPOINT_SIG) != signature:
        rep.fail(f"{CHECKPOINT_SIG} differs from the checkpoint's signature")
    if PUBLIC_KEY_PEM in seen:
        try:
            key = serialization.load_pem_public_key(zf.read(PUBLIC_KEY_PEM))
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            if base64.b64encode(raw).decode("ascii") != trusted:
                raise ValueError
        except ValueError:
            rep.fail(f"{PUBLIC_KEY_PEM} is not the trusted key")
    return dict(signed)


def _check_events(zf: zipfile.ZipFile, head: dict[str, Any], rep: BundleReport) -> None:
    """Walk the segment: seqs consecutive, each full event's hash recomputed from its
    body and the previous hash, the last hash the signed head's. A first pass reads
    only the seqs, to name an added, removed or reordered event as such."""
    seqs = array("q")
    with zf.open(EVENTS) as f:
        for n, raw in enumerate(f, 1):
            try:
                seqs.append(int(json.loads(raw)["seq"]))
            except (ValueError, KeyError, TypeError, OverflowError):
                rep.fail(f"{EVENTS} line {n} is not an event")
                return
    if not seqs:
        rep.fail(f"{EVENTS} is empty: the chain proof does not reach the signed checkpoint")
        return
    ordered = sorted(seqs)
    for a, b in itertools.pairwise(ordered):
        if a == b:
            rep.fail(f"event {a} appears twice: an event was added")
            return
    for a, b in itertools.pairwise(ordered):
        if b != a + 1:
            rep.fail(f"event {a + 1} is missing (next present is {b}): an event was removed")
            return
    for a, b in zip(seqs, ordered, strict=True):
        if a != b:
            rep.fail(f"event {a} comes where event {b} belongs: events were reordered")
            return
    prev_hash: str | None = None
    prev_seq: int | None = None
    with zf.open(EVENTS) as f:
        for raw in f:
            entry = json.loads(raw)
            seq, hash_ = int(entry["seq"]), str(entry.get("hash"))
            if not entry.get("elided"):
                body = {k: v for k, v in entry.items() if k not in ("prev_hash", "hash")}
                link = str(entry.get("prev_hash", ""))
                if prev_hash is not None and link != prev_hash:
                    rep.fail(f"event {seq} does not link to event {seq - 1}: an event was added, removed or edited")
                    return
                if ledger.compute_hash(link, body) != hash_:
                    rep.fail(f"event {seq} was edited (its hash does not match its content)")
                    return
            prev_seq, prev_hash = seq, hash_
            rep.events_checked += 1
    if prev_seq != head.get("seq") or prev_hash != head.get("hash"):
        rep.fail(f"the chain proof ends at event {prev_seq} and does not reach the signed checkpoint "
                 f"(event {head.get('seq')})")


def _check_manifest(zf: zipfile.ZipFile, seen: set[str], actual: dict[str, str], rep: BundleReport) -> None:
    """Each exported original is the file its custody record received."""
    try:
        manifest = json.loads(zf.read("manifest.json"))
        items = list(manifest["items"])
    except (ValueError, KeyError, TypeError):
        rep.fail("manifest.json is malformed")
        return
    received: dict[str, str] = {}
    with zf.open(EVENTS) if EVENTS in seen else _empty() as f:
        for raw in f:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if entry.get("action") == "item.received" and entry.get("item_id"):
                received[str(entry["item_id"])] = str((entry.get("detail") or {}).get("sha256"))
    for item in items:
        path = item.get("file")
        if not path:
            continue
        if path not in seen:
            rep.fail(f"file missing: {path} (exhibit {item.get('id')})")
            continue
        digest = actual.get(path)
        if digest is not None and digest != item.get("sha256_at_ingest"):
            rep.fail(f"{path} is not the file received: its SHA-256 {digest} differs from the ingest hash")
        recorded = received.get(str(item.get("id")))
        if recorded is not None and recorded != item.get("sha256_at_ingest"):
            rep.fail(f"exhibit {item.get('id')}: the manifest's ingest hash differs from its custody event's")


class _empty:
    def __enter__(self) -> list[bytes]:
        return []

    def __exit__(self, *exc: object) -> None:
        return None
