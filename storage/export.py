"""The export bundle: evidence leaving the system with its continuity (issue 13,
DESIGN.md §4 "Export bundle").

A bundle is one zip, written as a stream in constant memory (``write_bundle``):

- ``originals/<item id>_<sanitised name>``: the bytes as received, stored, not deflated
  (zip64 past 4 GiB; no temporary copy), each re-hashed as it is written and refused if
  it no longer matches its SHA-256 at ingest;
- ``derivatives/<item id>_<kind>.<ext>`` with ``with_derivatives``;
- ``infected/`` (only when an admin asks for infected items) with ``infected/WARNING.txt``;
- ``manifest.json``: the report and, per item, its state, sizes, hashes, times,
  statement, scan verdict, metadata and derivatives (tool, version, argv, hashes);
- ``custody/events.jsonl``: the chain segment from the first event of these items to
  the ledger head: their events in full, every other report's events by seq and hash
  only (``"elided": true``), so nothing of another report is revealed;
- ``custody/checkpoint.json``: the ledger head and the SHA-256 of every file above,
  signed with the ledger's Ed25519 key, with the public key and its fingerprint; the
  same signed bytes, signature and key as ``checkpoint-signed.json``,
  ``checkpoint.sig`` and ``ledger-public-key.pem`` for ``openssl pkeyutl``;
- ``continuity.html`` (printable continuity statement) and ``README.txt``;
- ``SHA256SUMS`` over every other file, in the format ``sha256sum -c`` reads.

A partner's bundle (``partner=PartnerScope(...)``, issue 13 item 3) has the same format,
limited to the items their live shares let them download, and nothing of the force's
casework: no triage or its reason, the citizen's typed place and the location fields of
the metadata only with a location grant, and in ``custody/events.jsonl`` only the
provenance events of those items (received, hashed, scanned, copied, state changes) in
full; notes, tags, triage, views, downloads, shares and every report-level event appear
by seq and hash only, like another report's (SECURITY_CHECKLIST AC-04).

What the signature adds to the chain: an elided event's hash cannot be recomputed
without its body, so the chain alone does not bind the segment to the checkpoint. The
ledger key signs the head *and* the hashes of the bundle's files (events.jsonl among
them) only after the whole chain was walked and verified here, so a segment edited
after signing no longer matches what was signed (SECURITY_CHECKLIST AU-04, AU-06).
``storage.bundle_verify`` checks all of it offline.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import itertools
import json
import re
import unicodedata
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, or_, select
from sqlmodel import col

from storage import ledger
from storage.blobs.protocol import NAMESPACES, BlobNotFound, BlobStore
from storage.db import Database
from storage.errors import DomainError, NotFound
from storage.lifecycle import ItemState
from storage.models import CustodyEvent, Derivative, EvidenceItem, Report, Submission

BUNDLE_FORMAT = "exhibit-bundle/1"
SIGNED_TYPE = "exhibit.bundle-checkpoint"
SUMS = "SHA256SUMS"
EVENTS = "custody/events.jsonl"
CHECKPOINT = "custody/checkpoint.json"
CHECKPOINT_SIGNED = "custody/checkpoint-signed.json"
CHECKPOINT_SIG = "custody/checkpoint.sig"
PUBLIC_KEY_PEM = "custody/ledger-public-key.pem"
# Files the signature cannot cover (they carry it); SHA256SUMS covers them.
SIGNATURE_FILES = (CHECKPOINT, CHECKPOINT_SIGNED, CHECKPOINT_SIG, PUBLIC_KEY_PEM)
CHUNK = 1 << 20
WALK_BATCH = 5000

# Items whose bytes never go in a bundle: declined at triage or purged (listed with
# state and hash only), infected (only on an explicit admin request, apart).
INFECTED = "infected"
PURGED = "purged"


# Metadata keys that place the evidence precisely (EXIF GPS, QuickTime/MP4 location
# atoms, XMP): matched case-insensitively against each key (and the flattened key path
# on the partner's page). Shown to, or exported for, a partner only with a location grant.
LOCATION_KEY_PARTS = ("gps", "location", "latitude", "longitude", "altitude", "geo", "iso6709")

# The events a partner's bundle carries in full: how the evidence came in and what the
# system did to it. Everything else (casework, views, downloads, shares) is elided.
PARTNER_EVENT_ACTIONS = frozenset({
    "item.received", "item.client_hash", "item.sniffed", "item.verified", "item.metadata", "item.derivative",
    "item.quarantined",
})
PARTNER_EVENT_PREFIXES = ("fixity.",)
# The state changes (``item.<state>``): provenance too.
_STATE_ACTIONS = frozenset(f"item.{s.value}" for s in ItemState)


def is_location_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in LOCATION_KEY_PARTS)


def without_location(value: Any) -> Any:
    """``value`` (extracted metadata) with every location key removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_location(v) for k, v in value.items() if not is_location_key(str(k))}
    if isinstance(value, list):
        return [without_location(v) for v in value]
    return value


@dataclass(frozen=True)
class PartnerScope:
    """Who a partner's bundle is for and what their shares grant beyond the evidence."""

    recipient: str
    grant_location: bool = False

    def shows_event(self, ev: CustodyEvent) -> bool:
        """Is ``ev`` one the partner may read in full? Its action must be provenance, its
        actor the citizen, the worker or the system (never a member of staff: their
        e-mail, reasons and decisions are the force's), and its detail must name nothing
        internal: no storage key (every key has one shape), no server path, no tool
        output or free-text reason. An event body cannot be cleaned without breaking its
        hash, so anything else is elided whole (AC-04); the manifest gives the same
        provenance facts in clean form."""
        action = ev.action
        provenance = (action in PARTNER_EVENT_ACTIONS or action.startswith(PARTNER_EVENT_PREFIXES)
                      or action in _STATE_ACTIONS)
        if not provenance or not ev.actor.startswith(PARTNER_SAFE_ACTORS):
            return False
        return _partner_safe(ev.detail or {})


PARTNER_COPY_NOTE = (
    "Partner copy. Custody events of these exhibits that record the force's own handling (views, "
    "downloads, shares, casework, decisions by staff) or name its internal storage are withheld: they "
    "appear in custody/events.jsonl by their hash only, so the chain still checks, and each exhibit "
    "states how many (custody_events_withheld); the force's own record holds them in full. Without a "
    "location grant the manifest omits the typed place and the location fields of the metadata, but "
    "each original is byte for byte as received and keeps whatever its camera embedded."
)

# Who may appear in a partner's copy of the trail: the citizen's link, the worker, the system.
PARTNER_SAFE_ACTORS = ("citizen:", "worker:", "system:")
# Detail keys that carry people's words or a tool's raw output: never shown to a partner.
PARTNER_UNSAFE_KEYS = frozenset({"reason", "human_decision", "stderr", "stdout", "reply", "error", "note"})
_ABSOLUTE_PATH = re.compile(r"(?:^|[\s=:'\"(])/[A-Za-z0-9._-]")
# Any storage key: the store makes every one in this shape (storage/blobs/keys.py).
_STORAGE_KEY = re.compile("(?:" + "|".join(NAMESPACES) + ")/[0-9a-f]{32}")


def _partner_safe(value: Any) -> bool:
    if isinstance(value, dict):
        return all(str(k) not in PARTNER_UNSAFE_KEYS and _partner_safe(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_partner_safe(v) for v in value)
    if isinstance(value, str):
        return not _ABSOLUTE_PATH.search(value) and not _STORAGE_KEY.search(value)
    return True


class ExportError(DomainError):
    code = "ERR_EXPORT"


def sanitise_name(name: str, limit: int = 80) -> str:
    """A file name safe on every file system and in ``sha256sum`` lines: the citizen's
    name is untrusted (path separators, ``..``, control characters, newlines that would
    forge a SHA256SUMS line, a leading dash). Letters, digits, ``.``, ``_``, ``-`` only."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_name).strip("._-")
    cleaned = re.sub(r"\.{2,}", ".", cleaned)
    return cleaned[-limit:] or "file"


def public_key_fingerprint(public_key_b64: str) -> str:
    """SHA-256 of the raw public key, hex: what a person reads out to compare keys."""
    return hashlib.sha256(base64.b64decode(public_key_b64)).hexdigest()


class Writable(Protocol):
    """Where a bundle goes: a file, or a buffer a streaming response drains."""

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class _HashingSink:
    """The zip's output: counts and hashes every byte (the bundle's SHA-256 for the
    custody event) and passes it on. No ``seek``/``tell``, so ``zipfile`` writes in
    streaming mode (data descriptors) and never rewinds: the same bytes can go to a
    socket."""

    def __init__(self, out: Writable) -> None:
        self._out = out
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self._out.write(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        """The caller owns ``out`` and closes it."""


@dataclass
class BundleResult:
    sha256: str
    size: int
    report_reference: str
    items: list[str]
    files: dict[str, str] = field(default_factory=dict)
    head_seq: int = 0


def _time(value: dt.datetime | None) -> str | None:
    return ledger.format_time(value) if value is not None else None


def _clean_argv(argv: list[str] | None, keys: dict[str, str]) -> list[str]:
    """A derivative's argv without storage keys or server paths: they say nothing to a
    third party reproducing the step and reveal the store's layout."""
    cleaned: list[str] = []
    for n, arg in enumerate(argv or []):
        text = str(arg)
        for key, label in keys.items():
            text = text.replace(key, label)
        if text.startswith("/"):
            # The program keeps its name (what a third party runs); other paths go.
            text = text.rsplit("/", 1)[1] if n == 0 else "<file>"
        cleaned.append(text)
    return cleaned


def _ext(mime: str) -> str:
    return {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "video/mp4": "mp4",
            "audio/mp4": "m4a", "application/pdf": "pdf"}.get(mime, "bin")


@dataclass
class _Plan:
    report: Report
    items: list[EvidenceItem]
    derivatives: dict[str, list[Derivative]]
    submissions: dict[str, Submission]


def _plan(db: Database, reference: str, item_ids: list[str] | None) -> _Plan:
    from storage.reports import get_report_by_reference

    with db.read() as session:
        report = get_report_by_reference(session, reference)
        query = select(EvidenceItem).where(EvidenceItem.report_id == report.id)  # type: ignore[arg-type]
        items = list(session.exec(query.order_by(EvidenceItem.received_at, EvidenceItem.id)).scalars())  # type: ignore[call-overload,arg-type]
        if item_ids:
            wanted = set(item_ids)
            unknown = wanted - {i.id for i in items}
            if unknown:
                # Never say whether the id exists in another report.
                raise NotFound(f"not items of {reference}: {', '.join(sorted(unknown))}", code="ERR_ITEM_NOT_FOUND")
            items = [i for i in items if i.id in wanted]
        ids = [i.id for i in items]
        derivatives: dict[str, list[Derivative]] = {i: [] for i in ids}
        if ids:
            rows = session.exec(select(Derivative).where(Derivative.item_id.in_(ids))  # type: ignore[attr-defined,call-overload]
                                .order_by(Derivative.item_id, Derivative.kind)).scalars()
            for d in rows:
                derivatives[d.item_id].append(d)
        sub_ids = {i.submission_id for i in items if i.submission_id}
        submissions: dict[str, Submission] = {}
        if sub_ids:
            for sub in session.exec(select(Submission).where(col(Submission.id).in_(sub_ids))).scalars():  # type: ignore[call-overload]
                submissions[sub.id] = sub
        session.expunge_all()
    return _Plan(report, items, derivatives, submissions)


def _first_relevant_seq(db: Database, report_id: str, item_ids: list[str]) -> int | None:
    with db.read() as session:
        cond = (CustodyEvent.report_id == report_id) & CustodyEvent.item_id.is_(None)  # type: ignore[union-attr]
        if item_ids:
            cond = or_(cond, CustodyEvent.item_id.in_(item_ids))  # type: ignore[union-attr]
        value = session.exec(select(func.min(CustodyEvent.seq)).where(cond)).scalar()  # type: ignore[call-overload]
    return int(value) if value is not None else None


async def write_bundle(
    db: Database,
    store: BlobStore,
    reference: str,
    out: Writable,
    *,
    key: Ed25519PrivateKey,
    exported_by: str,
    reason: str,
    item_ids: list[str] | None = None,
    with_derivatives: bool = False,
    include_infected: bool = False,
    partner: PartnerScope | None = None,
    drain: Callable[[], Awaitable[None]] | None = None,
) -> BundleResult:
    """Write the bundle of report ``reference`` to ``out`` (only ``write``/``flush`` are
    used). Raises ``ledger.LedgerBroken`` when the chain does not verify (nothing is
    signed over a broken chain) and ``ExportError`` when an original no longer matches
    its ingest hash. The caller records the ``export.created`` event with the result.

    ``drain`` (optional) is awaited after every piece written, so a caller streaming
    ``out`` to a client can hand the bytes on and apply back-pressure.

    ``partner``: a partner's bundle (see the module docstring). The caller decides which
    items the partner may download and passes them as ``item_ids``."""
    if not reason.strip():
        raise ExportError("a reason is required to export evidence", code="ERR_REASON_REQUIRED")
    if partner is not None and not item_ids:
        # A partner's bundle is always an explicit list of shared items, never "the report".
        raise ExportError("a partner's bundle needs the list of shared items", code="ERR_EXPORT_SCOPE")
    plan = _plan(db, reference, item_ids)
    sink = _HashingSink(out)
    files: dict[str, str] = {}  # path -> sha256 of every file but SHA256SUMS
    created_at = ledger.format_time(dt.datetime.now(dt.UTC))
    stamp = dt.datetime.now(dt.UTC).timetuple()[:6]

    def info(name: str, size: int | None = None, deflate: bool = False) -> zipfile.ZipInfo:
        zi = zipfile.ZipInfo(name, date_time=stamp)
        zi.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
        zi.external_attr = 0o644 << 16
        if size is not None:
            zi.file_size = size  # lets zipfile choose zip64 up front for files over 4 GiB
        return zi

    def put(zf: zipfile.ZipFile, name: str, data: bytes, deflate: bool = True) -> None:
        with zf.open(info(name, len(data), deflate), "w") as f:
            f.write(data)
        files[name] = hashlib.sha256(data).hexdigest()

    async def put_blob(zf: zipfile.ZipFile, name: str, blob_key: str, size: int, expected: str) -> str:
        digest = hashlib.sha256()
        with zf.open(info(name, size), "w", force_zip64=size >= zipfile.ZIP64_LIMIT) as f:
            async for chunk in store.read(blob_key):
                digest.update(chunk)
                f.write(chunk)
                if drain is not None:
                    await drain()
        actual = digest.hexdigest()
        if actual != expected:
            # Never hand over bytes that are not the ones received (ACPO principle 1):
            # the export stops and says so; the fixity check must look at this item.
            raise ExportError(f"{name}: the stored bytes no longer match their recorded SHA-256 "
                              f"({actual} != {expected}); export stopped", code="ERR_INTEGRITY")
        files[name] = actual
        return actual

    manifest_items: list[dict[str, Any]] = []
    infected_listed = False
    with zipfile.ZipFile(sink, "w", allowZip64=True) as zf:
        for item in plan.items:
            keys = {item.blob_key: "<original>"}
            keys.update({d.blob_key: f"<{d.kind}>" for d in plan.derivatives[item.id]})
            declined = item.triage == "declined"
            infected = item.state == INFECTED or item.verdict == INFECTED
            entry: dict[str, Any] = {
                "id": item.id,
                "state": item.state,
                "state_reason": item.state_reason,
                "triage": item.triage,
                "triage_reason": item.triage_reason,
                "original_filename": item.original_filename,
                "claimed_type": item.claimed_type,
                "detected_type": item.detected_type,
                "size": item.size,
                "sha256_at_ingest": item.sha256,
                "sha256_at_verification": item.verified_sha256,
                "client_sha256": item.client_sha256,
                "client_hash_match": item.client_hash_match,
                "received_at": _time(item.received_at),
                "scan": {"verdict": item.verdict, "signature": item.verdict_signature, "engine": "ClamAV",
                         "signature_version": item.signature_db_version},
                "metadata": item.media_metadata or {},
                "file": None,
                "bytes_included": False,
                "not_included_because": None,
            }
            sub = plan.submissions.get(item.submission_id or "")
            # The statement and its declaration, not the citizen's contact details: the
            # bundle goes to court and the defence; contact data stays in the system.
            entry["submission"] = None if sub is None else {
                "reference": sub.reference, "statement": sub.description, "occurred_at": sub.occurred_at,
                "location": sub.location, "declaration_version": sub.declaration_version,
                "declaration_accepted_at": _time(sub.declaration_accepted_at),
            }
            if partner is not None:
                # The force's casework stays with the force (AC-04): no triage, no reason.
                for internal in ("triage", "triage_reason"):
                    entry.pop(internal)
                if entry["submission"] is not None:
                    # The citizen's receipt code opens their status page: not the partner's.
                    entry["submission"].pop("reference")
                if not partner.grant_location:
                    # A witness's place is personal data: only with the sharer's grant.
                    entry["metadata"] = without_location(entry["metadata"])
                    if entry["submission"] is not None:
                        entry["submission"]["location"] = None
            name = f"{item.id}_{sanitise_name(item.original_filename)}"
            if item.state == PURGED:
                entry["not_included_because"] = "purged: the bytes were destroyed under the retention policy"
            elif declined:
                # A partner does not learn the force's triage decision, only that the bytes
                # were withheld.
                entry["not_included_because"] = ("withheld by the force: listed with its hash" if partner is not None
                                                 else "declined at triage: listed with its hash, bytes not exported")
            elif infected and not include_infected:
                entry["not_included_because"] = "infected: excluded (an admin may ask for it explicitly)"
            else:
                path = f"infected/{name}" if infected else f"originals/{name}"
                try:
                    size = await store.size(item.blob_key)
                except BlobNotFound:
                    entry["not_included_because"] = "the bytes are missing from the store"
                else:
                    if infected and not infected_listed:
                        put(zf, "infected/WARNING.txt", (
                            b"WARNING: the files in this folder were found INFECTED by the malware scanner.\n"
                            b"Do not open them on a machine that is not isolated for malware analysis.\n"
                            b"They were exported on an explicit request; see manifest.json for the verdict.\n"
                        ))
                        infected_listed = True
                    entry["sha256_in_bundle"] = await put_blob(zf, path, item.blob_key, size, item.sha256)
                    entry["file"], entry["bytes_included"] = path, True
            derivs = []
            for d in plan.derivatives[item.id]:
                dentry: dict[str, Any] = {
                    "kind": d.kind, "mime_type": d.mime_type, "size": d.size, "sha256": d.sha256,
                    "input_sha256": d.input_sha256, "tool": d.tool, "tool_version": d.tool_version,
                    "argv": _clean_argv(d.argv, keys), "width": d.width, "height": d.height,
                    "created_at": _time(d.created_at), "file": None,
                }
                if with_derivatives and entry["bytes_included"] and not infected:
                    dpath = f"derivatives/{item.id}_{sanitise_name(d.kind)}.{_ext(d.mime_type)}"
                    try:
                        dsize = await store.size(d.blob_key)
                    except BlobNotFound:
                        dentry["not_included_because"] = "the bytes are missing from the store"
                    else:
                        await put_blob(zf, dpath, d.blob_key, dsize, d.sha256)
                        dentry["file"] = dpath
                derivs.append(dentry)
            entry["derivatives"] = derivs
            manifest_items.append(entry)

        # The chain: walked in full here (never sign over a chain that does not verify),
        # the segment from the first event of these items written as it passes.
        ids = [i.id for i in plan.items]
        id_set = set(ids)
        first = _first_relevant_seq(db, plan.report.id, ids)
        withheld: dict[str, int] = {}
        events: list[dict[str, Any]] = []
        events_digest = hashlib.sha256()
        with zf.open(info(EVENTS, deflate=True), "w", force_zip64=True) as ef:

            def segment(rows: list[CustodyEvent]) -> Iterator[CustodyEvent]:
                for ev in rows:
                    if first is not None and ev.seq >= first:
                        mine = ev.item_id in id_set or (ev.report_id == plan.report.id and ev.item_id is None)
                        if mine and partner is not None:
                            # A partner gets the evidence's provenance, not the casework.
                            shown = ev.item_id in id_set and partner.shows_event(ev)
                            if not shown and ev.item_id in id_set:
                                withheld[ev.item_id] = withheld.get(ev.item_id, 0) + 1
                            mine = shown
                        if mine:
                            body = {**ledger.event_body(ev), "prev_hash": ev.prev_hash, "hash": ev.hash}
                            events.append(body)
                        else:
                            # Another report's event: its place in the chain, nothing of it.
                            body = {"seq": ev.seq, "hash": ev.hash, "elided": True}
                        line = ledger.canonical_json(body) + b"\n"
                        events_digest.update(line)
                        ef.write(line)
                    yield ev

            # Walked batch by batch, each continuing the last (``start``), so a streaming
            # caller's ``drain`` runs between batches and memory stays flat.
            rows = ledger.iter_events(db)
            result = ledger.verify_events([])
            while batch := list(itertools.islice(rows, WALK_BATCH)):
                result = ledger.verify_events(segment(batch), start=(result.head_seq, result.head_hash, result.count))
                if not result.ok:
                    raise ledger.LedgerBroken(result)
                if drain is not None:
                    await drain()
            if first is None:
                # No event of these items yet: the head alone anchors the proof.
                line = ledger.canonical_json({"seq": result.head_seq, "hash": result.head_hash, "elided": True}) + b"\n"
                events_digest.update(line)
                ef.write(line)
        files[EVENTS] = events_digest.hexdigest()
        head = {"seq": result.head_seq, "hash": result.head_hash, "count": result.count}

        if partner is not None:
            for entry in manifest_items:
                entry["custody_events_withheld"] = withheld.get(entry["id"], 0)
        report = plan.report
        manifest = {
            "format": BUNDLE_FORMAT,
            "created_at": created_at,
            "exported_by": exported_by,
            "reason": reason,
            "report": {"id": report.id, "reference": report.reference, "kind": report.kind, "title": report.title,
                       "created_at": _time(report.created_at)},
            "items": manifest_items,
            "with_derivatives": with_derivatives,
            "include_infected": include_infected,
            "audience": "force" if partner is None else "partner",
            **({"shared_with": partner.recipient, "location_granted": partner.grant_location,
                "partner_copy": PARTNER_COPY_NOTE} if partner is not None else {}),
            "custody": {"events": EVENTS, "checkpoint": CHECKPOINT, "ledger_head": head},
        }
        put(zf, "manifest.json", json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n")
        put(zf, "continuity.html", continuity_html(manifest, events).encode())
        put(zf, "README.txt", readme_text(report.reference, partner=partner is not None).encode())

        # The signature: over the head the walk verified and every file written so far.
        signed = {"type": SIGNED_TYPE, "format": BUNDLE_FORMAT, "report": report.reference,
                  "created_at": created_at, "ledger_head": head, "files": dict(sorted(files.items()))}
        message = ledger.canonical_json(signed)
        signature = key.sign(message)
        pub = ledger.public_key_b64(key)
        document = {"signed": signed, "algorithm": "Ed25519", "public_key": pub,
                    "fingerprint": public_key_fingerprint(pub),
                    "signature": base64.b64encode(signature).decode("ascii")}
        put(zf, CHECKPOINT, json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n")
        put(zf, CHECKPOINT_SIGNED, message, deflate=False)
        put(zf, CHECKPOINT_SIG, signature, deflate=False)
        pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        put(zf, PUBLIC_KEY_PEM, pem)
        # Two spaces: sha256sum's text-mode format; names are server-made, no newlines.
        sums = "".join(f"{digest}  {path}\n" for path, digest in sorted(files.items()))
        with zf.open(info(SUMS, deflate=True), "w") as f:
            f.write(sums.encode("ascii"))
    sink.flush()
    return BundleResult(sha256=sink.sha256.hexdigest(), size=sink.size, report_reference=report.reference,
                        items=ids, files={**files}, head_seq=result.head_seq)


def export_detail(result: BundleResult, reason: str) -> dict[str, Any]:
    """The detail of an ``export.created`` custody event: why, the bundle's SHA-256 and
    size, which items, and the ledger head the bundle's proof reaches."""
    return {"reason": reason, "bundle_sha256": result.sha256, "bundle_size": result.size, "items": result.items,
            "ledger_head_seq": result.head_seq}


def record_export(db: Database, result: BundleResult, *, actor: str, reason: str, report_id: str | None = None,
                  request_id: str | None = None) -> CustodyEvent:
    """The custody event of an export: who, why, which items and the bundle's SHA-256."""
    with db.write() as session:
        if report_id is None:
            from storage.reports import get_report_by_reference

            report_id = get_report_by_reference(session, result.report_reference).id
        return ledger.append(db, session, actor=actor, action="export.created", subject=f"report:{report_id}",
                             report_id=report_id, detail=export_detail(result, reason), request_id=request_id)


# --- human-readable parts ----------------------------------------------------------------

_ACTIONS = {
    "item.received": "received into the evidence store",
    "item.verified": "bytes re-hashed and found identical",
    "item.metadata": "metadata extracted",
    "item.derivative": "viewing copy made",
    "item.download": "original downloaded",
    "item.viewed": "viewed",
    "export.created": "exported",
}


def continuity_html(manifest: dict[str, Any], events: list[dict[str, Any]]) -> str:
    """The printable continuity statement: every value is escaped (file names, metadata
    and statements come from citizens and files: no markup or script gets through)."""
    e = html.escape
    report = manifest["report"]
    by_item: dict[str | None, list[dict[str, Any]]] = {}
    for ev in events:
        by_item.setdefault(ev.get("item_id"), []).append(ev)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Continuity statement: {e(report['reference'])}</title>",
        "<style>@page{size:A4;margin:18mm}body{font:11pt/1.4 sans-serif;color:#000;max-width:100%}"
        "table{border-collapse:collapse;width:100%;table-layout:fixed}th,td{border:1px solid #444;padding:3px 5px;"
        "text-align:left;vertical-align:top;overflow-wrap:anywhere}code{font-size:9pt;overflow-wrap:anywhere}"
        "section{break-inside:avoid-page}</style></head><body><main>",
        f"<h1>Continuity statement for report {e(report['reference'])}</h1>",
        f"<p>Report kind: {e(report['kind'])}. Title: {e(report['title'] or '(none)')}. "
        f"Exported on {e(manifest['created_at'])} by {e(manifest['exported_by'])}. "
        f"Reason given: {e(manifest['reason'])}.</p>",
        "<p>Each exhibit below is identified by its SHA-256 hash, a fingerprint of its exact bytes: "
        "any change to a file, however small, changes its hash. The hashes were recorded when each file "
        "was received and checked again when it was verified and when this bundle was made. Every event "
        "listed is an entry of the system's tamper-evident custody record.</p>",
    ]
    if manifest.get("audience") == "partner":
        parts.append(f"<p><strong>{e(PARTNER_COPY_NOTE)}</strong></p>")
    for n, item in enumerate(manifest["items"], 1):
        parts.append(f"<section><h2>Exhibit {n}: {e(item['original_filename'] or '(no name)')}</h2>")
        rows = [
            ("Item id", item["id"]),
            ("State", item["state"] + (f" (triage: {item['triage']})" if item.get("triage") else "")),
            ("Received", item["received_at"]),
            ("Size", f"{item['size']} bytes"),
            ("SHA-256 when received", item["sha256_at_ingest"]),
            ("SHA-256 when verified", item["sha256_at_verification"] or "not verified"),
            ("File in this bundle", item["file"] or f"not included: {item['not_included_because']}"),
            ("Malware scan", f"{item['scan']['verdict'] or 'not scanned'} "
                             f"({item['scan']['engine']} {item['scan']['signature_version'] or ''})"),
        ]
        parts.append("<table><tbody>" + "".join(
            f'<tr><th scope="row">{e(k)}</th><td><code>{e(str(v))}</code></td></tr>' for k, v in rows
        ) + "</tbody></table>")
        if item["derivatives"]:
            parts.append("<h3>Processing</h3><ul>")
            for d in item["derivatives"]:
                parts.append(f"<li>A {e(d['kind'])} copy was made with {e(d['tool'])} {e(d['tool_version'])} "
                             f"from the original (input SHA-256 <code>{e(d['input_sha256'])}</code>); "
                             f"its SHA-256 is <code>{e(d['sha256'])}</code>. The original was not changed.</li>")
            parts.append("</ul>")
        history = by_item.get(item["id"], [])
        parts.append("<h3>Who handled it and when</h3>")
        if history:
            parts.append('<table><thead><tr><th scope="col">When (UTC)</th><th scope="col">Who</th>'
                         '<th scope="col">What</th><th scope="col">Record no.</th></tr></thead><tbody>')
            for ev in history:
                what = _ACTIONS.get(ev["action"], ev["action"])
                parts.append(f"<tr><td>{e(ev['at'])}</td><td>{e(ev['actor'])}</td><td>{e(what)}</td>"
                             f"<td>{e(str(ev['seq']))}</td></tr>")
            parts.append("</tbody></table>")
        else:
            parts.append("<p>No custody events recorded for this item.</p>")
        if item.get("custody_events_withheld"):
            parts.append(f"<p>{e(str(item['custody_events_withheld']))} further custody events of this exhibit "
                         "are withheld from this partner copy (listed by their hash only).</p>")
        parts.append("</section>")
    head = manifest["custody"]["ledger_head"]
    parts.append(f"<p>The custody record was verified in full up to entry {e(str(head['seq']))} "
                 f"(<code>{e(head['hash'])}</code>) and signed; see README.txt to check this bundle.</p>")
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def readme_text(reference: str, *, partner: bool = False) -> str:
    shared = ("""
This bundle was made for a partner agency and holds only the exhibits shared with it.
Custody events about the force's own casework (notes, triage, views, downloads,
shares) appear in custody/events.jsonl by their hash only, so the chain still checks.
""" if partner else "")
    return f"""Evidence bundle for report {reference}
==========================================
{shared}
Check it with standard tools (Linux, macOS with coreutils):

1. Unzip the bundle into an empty folder and, inside it, run:

       sha256sum -c SHA256SUMS

   Every line must say OK. A changed, missing or replaced file fails here.
   (A file added to the folder is not listed; exhibit verify-bundle finds it.)

2. Check the signature of the custody checkpoint with OpenSSL (1.1.1 or later):

       openssl pkeyutl -verify -pubin -inkey custody/ledger-public-key.pem \\
           -rawin -in custody/checkpoint-signed.json -sigfile custody/checkpoint.sig

   It must print "Signature Verified Successfully". Then compare the public key with
   the one the force published to you (its SHA-256 fingerprint is in
   custody/checkpoint.json): a key found inside the bundle proves nothing by itself.
   checkpoint-signed.json lists the SHA-256 of every file in the bundle and the head of
   the custody record the signature vouches for.

3. Or, with the exhibit package installed (no database or network needed):

       exhibit verify-bundle BUNDLE.zip --public-key <the force's public key, base64>

   It checks everything above plus the custody events: each event's hash, the chain
   from the first event of these exhibits up to the signed head, and that no file was
   added. It exits 0 when all holds and 1 naming what fails.

Contents: originals/ (the files as received, byte for byte), derivatives/ (viewing
copies, when asked), manifest.json (hashes, times, scan results, metadata, processing),
custody/events.jsonl (custody events; other reports' events appear only as their hash),
custody/checkpoint.json (signed), continuity.html (printable continuity statement).
"""
