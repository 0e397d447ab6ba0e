"""The ``exhibit`` command line (DESIGN.md §5). A contract: scripts rely on its commands,
flags, exit codes and ``--json`` output.

Exit codes: 0 success; 1 the command ran and the answer is "no" (e.g. the ledger does
not verify); 2 bad usage or a domain error (unknown report, invalid value, unreadable
file); 3 the command could not run (database unreachable, an unexpected error). A
monitoring job that runs ``exhibit audit verify`` must be able to tell "the ledger was
tampered with" (1) from "the database was down" (3).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from storage import ledger
from storage.db import Database
from storage.errors import DomainError
from storage.settings import Settings, parse_bytes, parse_duration

log = logging.getLogger("exhibit.cli")


class Output:
    """Prints either human lines or one JSON document."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def emit(self, data: dict[str, Any] | list[Any], human: Callable[[], str] | str) -> None:
        if self.as_json:
            print(json.dumps(data, indent=2, sort_keys=True, default=str))
        else:
            print(human() if callable(human) else human)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


# Databases opened by the running command; main() disposes of them when it ends, so
# connection pools never outlive the command (and tests can call main() in-process).
_opened: list[Database] = []


def _open_db(settings: Settings) -> Database:
    from storage.migrate import open_current

    # Refuse to work on an unmigrated database with a clear instruction, rather than
    # failing later with "no such table"; and never create one (or its directory): only
    # `exhibit db upgrade` does (a missing one: ERR_NO_DATABASE, exit 2).
    db = open_current(settings.database_url)
    _opened.append(db)
    return db


# --- commands --------------------------------------------------------------------------


def _runtime_role(settings: Settings) -> str | None:
    """The role to grant after an upgrade: the user of EXHIBIT_DATABASE_URL, when it is a
    PostgreSQL role other than the owner's (EXHIBIT_MIGRATION_DATABASE_URL)."""
    from storage.roles import role_of

    if not settings.database_url.startswith("postgresql") or settings.migration_database_url == settings.database_url:
        return None
    runtime, owner = role_of(settings.database_url), role_of(settings.migration_database_url)
    return runtime if runtime and runtime != owner else None


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from storage.migrate import current_heads, upgrade

    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    role = _runtime_role(settings)
    # Only this command connects as the owner; the grants are applied in the same run,
    # so tables a new migration created are usable by the runtime role at once.
    granted = upgrade(settings.migration_database_url, runtime_role=role)
    heads = list(current_heads())
    out.emit({"ok": True, "revision": heads, "runtime_role": role, "grants": granted},
             f"database upgraded to {', '.join(heads)}"
             + (f"; runtime role {role} granted its privileges on {len(granted)} tables" if role else ""))
    return 0


def cmd_db_grant(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from storage.roles import RoleError, grant_runtime

    engine = create_engine(settings.migration_database_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            granted = grant_runtime(conn, args.runtime_role)
    except RoleError as exc:
        raise DomainError(str(exc), code="ERR_ROLE_UNSAFE") from None
    finally:
        engine.dispose()
    out.emit({"ok": True, "runtime_role": args.runtime_role, "grants": granted},
             lambda: "\n".join(f"{t:<24} {p}" for t, p in granted.items()))
    return 0


def cmd_links_create(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from storage.links import create_link
    from storage.reports import get_report_by_reference

    expires = parse_duration(args.expires) if args.expires else settings.link_default_expiry_seconds
    max_files = args.max_files if args.max_files is not None else settings.link_max_files
    max_bytes = parse_bytes(args.max_bytes) if args.max_bytes else settings.link_max_bytes
    db = _open_db(settings)
    with db.write() as session:
        report = get_report_by_reference(session, args.ref)
        issued = create_link(db, session, report, public_url=settings.public_url, expires_in_seconds=expires,
                             max_files=max_files, max_bytes=max_bytes, actor=_actor())
        data = {"url": issued.url, "id": issued.link.id, "expires_at": ledger.format_time(issued.link.expires_at),
                "report": report.reference, "max_files": max_files, "max_bytes": max_bytes}
    out.emit(data, lambda: f"url         {data['url']}\nid          {data['id']}\nexpires_at  {data['expires_at']}\n"
             "The URL is shown once: send it to the citizen now.")
    return 0


def cmd_links_revoke(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from storage.links import revoke_link

    db = _open_db(settings)
    with db.write() as session:
        link = revoke_link(db, session, args.link_id, actor=_actor())
        data = {"id": link.id, "revoked_at": ledger.format_time(link.revoked_at) if link.revoked_at else None}
    out.emit(data, f"link {data['id']} revoked")
    return 0


def cmd_items_list(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from storage.items import list_items
    from storage.reports import get_report_by_reference

    db = _open_db(settings)
    with db.read() as session:
        report = get_report_by_reference(session, args.ref)
        rows = [
            {"id": i.id, "state": i.state, "sha256": i.sha256, "size": i.size, "filename": i.original_filename,
             "verdict": i.verdict, "triage": i.triage, "received_at": ledger.format_time(i.received_at)}
            for i in list_items(session, report.id)
        ]

    def human() -> str:
        if not rows:
            return f"no items in {args.ref}"
        return "\n".join(f"{r['id']}  {r['state']:<12} {r['size']:>12}  {r['sha256']}  {r['filename']}" for r in rows)

    out.emit(rows, human)
    return 0


def cmd_items_show(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from storage.items import item_summary

    db = _open_db(settings)
    with db.read() as session:
        data = item_summary(session, args.item_id)

    def human() -> str:
        lines = [f"{k:<22}{data[k]}" for k in ("id", "report", "state", "reason", "sha256", "verified_sha256",
                                                "size", "detected_type", "verdict", "verdict_signature",
                                                "signature_db_version", "triage", "received_at")]
        for d in data["derivatives"]:
            lines.append(f"derivative {d['kind']:<11} {d['sha256']}  {d['tool']} {d['tool_version']}")
        for j in data["jobs"]:
            lines.append(f"job {j['id']} {j['kind']} {j['state']} attempts {j['attempts']}/{j['max_attempts']}"
                         + (f" last error: {j['last_error']}" if j["last_error"] else ""))
        return "\n".join(lines)

    out.emit(data, human)
    return 0


def _read_json_file(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise DomainError(f"cannot read {path}: {exc.strerror}", code="ERR_FILE_UNREADABLE") from None
    except ValueError:
        raise DomainError(f"{path} is not a JSON document", code="ERR_FILE_UNREADABLE") from None


def cmd_audit_verify(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    # The only keys a checkpoint's signature is checked against: one given on the command
    # line (an auditor on another machine) or the configured EXHIBIT_LEDGER_PUBLIC_KEY.
    # Never one found in the checkpoint or beside the data: whoever could write the
    # checkpoint or the data directory could have signed with a key of their own
    # (SECURITY_CHECKLIST AU-06, issue 11 item 3).
    pinned = args.public_key or settings.ledger_public_key
    if pinned is not None:
        ledger.check_public_key(pinned)
    if args.checkpoint and pinned is None:
        raise DomainError("refusing an unpinned checkpoint: give the signer's public key with --public-key "
                          "or EXHIBIT_LEDGER_PUBLIC_KEY", code="ERR_CHECKPOINT_UNPINNED")
    db = _open_db(settings)
    checkpoint = None
    source: str | None = None
    if args.checkpoint:
        document = _read_json_file(args.checkpoint)
        try:
            checkpoint = ledger.read_checkpoint(document, trusted_public_key=pinned)
        except ledger.CheckpointInvalid as exc:
            out.emit({"ok": False, "reason": str(exc), "first_bad_seq": None}, f"checkpoint refused: {exc}")
            return 1
        source = args.checkpoint
    elif pinned is not None:
        # The checkpoints the database already holds: the newest that the pinned key
        # signed (issue 12 item 4). A cut tail or a rolled-back history shows against it.
        checkpoint = ledger.latest_stored_checkpoint(db, pinned)
        source = "database" if checkpoint is not None else None
    result = ledger.verify(db, checkpoint)
    from storage.audit_health import record_full_verification

    record_full_verification(db, result, by=f"exhibit audit verify ({_actor()})")  # shown on the audit desk
    data = result.as_dict()
    data["signer"] = {"public_key": pinned, "pinned": pinned is not None}
    data["checkpoint_source"] = source
    if result.ok:
        against = (f", consistent with the checkpoint at {result.checkpoint_seq} ({source})" if checkpoint
                   else ", no signed checkpoint checked" + ("" if pinned else " (no pinned public key)"))
        out.emit(data, f"ledger intact: {result.count} events, head {result.head_seq} {result.head_hash}{against}")
        return 0
    out.emit(data, f"LEDGER BROKEN at seq {result.first_bad_seq}: {result.reason}")
    return 1


def cmd_audit_checkpoint(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    db = _open_db(settings)
    assert settings.signing_key_file is not None
    key = ledger.load_or_create_signing_key(settings.signing_key_file)
    try:
        document = ledger.make_checkpoint(db, key)
    except ledger.LedgerBroken as exc:
        # Never sign over a chain that does not verify: that would vouch for the damage.
        out.emit(exc.result.as_dict(), f"LEDGER BROKEN at seq {exc.result.first_bad_seq}: {exc.result.reason}; "
                 "no checkpoint written")
        return 1
    _write_atomically(Path(args.out), json.dumps(document, indent=2, sort_keys=True) + "\n")
    body = document["checkpoint"]
    out.emit({**document, "path": args.out}, f"checkpoint of seq {body['seq']} ({body['count']} events) written to {args.out}")
    return 0


def cmd_export(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    import asyncio

    from storage import export
    from storage.blobs import open_store

    if not args.reason.strip():
        raise DomainError("a reason is required to export evidence (--reason)", code="ERR_REASON_REQUIRED")
    item_ids = [i.strip() for i in args.items.split(",") if i.strip()] if args.items else None
    db = _open_db(settings)
    assert settings.signing_key_file is not None
    key = ledger.load_or_create_signing_key(settings.signing_key_file)
    target = Path(args.out)
    tmp = target.with_name(f".{target.name}.part")

    async def run(f: BinaryIO) -> export.BundleResult:
        store = open_store(settings)
        try:
            return await export.write_bundle(
                db, store, args.ref, f, key=key, exported_by=_actor(), reason=args.reason, item_ids=item_ids,
                with_derivatives=args.with_derivatives, include_infected=args.include_infected)
        finally:
            await store.close()

    try:
        with open(tmp, "wb") as f:
            result = asyncio.run(run(f))
            f.flush()
            os.fsync(f.fileno())
    except ledger.LedgerBroken as exc:
        tmp.unlink(missing_ok=True)
        # Never sign over a chain that does not verify: that would vouch for the damage.
        out.emit(exc.result.as_dict(), f"LEDGER BROKEN at seq {exc.result.first_bad_seq}: {exc.result.reason}; "
                 "no bundle written")
        return 1
    except BaseException:
        tmp.unlink(missing_ok=True)  # no half bundle left where a whole one is expected
        raise
    # The custody event names who, why and the bundle's hash (issue 13 item 1). It is
    # written before the bundle takes its name: no bundle without its event (AU-10).
    try:
        event = export.record_export(db, result, actor=_actor(), reason=args.reason)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)
    data = {"ok": True, "path": str(target), "sha256": result.sha256, "size": result.size,
            "report": result.report_reference, "items": result.items, "ledger_head_seq": result.head_seq,
            "event_seq": event.seq}
    out.emit(data, f"bundle of {result.report_reference} ({len(result.items)} items, {result.size} bytes) "
             f"written to {target}\nsha256 {result.sha256}")
    return 0


def cmd_verify_bundle(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from storage.bundle_verify import verify_bundle

    # Offline: no database is opened. The signer is trusted only when pinned here, never
    # because its key is inside the bundle (AU-06, as in audit verify).
    pinned = args.public_key or settings.ledger_public_key
    if pinned is None:
        raise DomainError("give the force's public key with --public-key or EXHIBIT_LEDGER_PUBLIC_KEY: a key found "
                          "inside the bundle proves nothing", code="ERR_CHECKPOINT_UNPINNED")
    ledger.check_public_key(pinned)
    if not Path(args.bundle).is_file():
        raise DomainError(f"cannot read {args.bundle}", code="ERR_FILE_UNREADABLE")
    report = verify_bundle(Path(args.bundle), pinned)
    data = report.as_dict()
    if report.ok:
        out.emit(data, f"bundle intact: {report.files_checked} files, {report.events_checked} custody events up to "
                 f"the signed head {report.head_seq}, report {report.report}")
        return 0
    out.emit(data, "BUNDLE DOES NOT VERIFY:\n" + "\n".join(f"- {p}" for p in report.problems))
    return 1


def _write_atomically(path: Path, content: str) -> None:
    """Write ``path`` whole or not at all (temp file, fsync, rename, fsync the directory):
    a crash while a checkpoint is written must not leave a truncated one in place of
    the previous good one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def cmd_apikeys_add(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from storage.apikeys import add_api_key

    db = _open_db(settings)
    with db.write() as session:
        key, plaintext = add_api_key(db, session, args.name, actor=_actor(), unit=args.unit)
        data = {"id": key.id, "name": key.name, "unit": key.unit, "key": plaintext}
    out.emit(data, lambda: f"id    {data['id']}\nunit  {data['unit'] or '(none: only the reports it creates)'}\n"
             f"key   {data['key']}\n"
             "The key is shown once and only its hash is kept: store it in the reporting system now.")
    return 0


def cmd_apikeys_list(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from storage.apikeys import list_api_keys

    db = _open_db(settings)
    with db.read() as session:
        rows = [{"id": k.id, "name": k.name, "unit": k.unit, "created_at": ledger.format_time(k.created_at),
                 "revoked_at": ledger.format_time(k.revoked_at) if k.revoked_at else None}
                for k in list_api_keys(session)]
    out.emit(rows, lambda: "\n".join(f"{r['id']}  {r['name']}  unit={r['unit'] or '-'}  "
                                      f"{'revoked' if r['revoked_at'] else 'active'}"
                                      for r in rows) or "no API keys")
    return 0


def cmd_apikeys_revoke(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from storage.apikeys import revoke_api_key

    db = _open_db(settings)
    with db.write() as session:
        key = revoke_api_key(db, session, args.key_id, actor=_actor())
        data = {"id": key.id, "revoked": key.revoked_at is not None}
    out.emit(data, f"API key {data['id']} revoked")
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from exhibit.server import serve

    if args.host:
        settings = settings.replace(host=args.host)
    if args.port is not None:
        settings = settings.replace(port=args.port)
    if args.staff_host:
        settings = settings.replace(staff_host=args.staff_host)
    if args.staff_port is not None:
        settings = settings.replace(staff_port=args.staff_port)
    return serve(settings, role=args.role, with_worker=not args.no_worker, demo=args.demo)


def cmd_worker(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from exhibit.server import run_worker_forever

    concurrency = args.concurrency or settings.worker_concurrency
    return run_worker_forever(settings, concurrency=concurrency, lanes=args.lane)


def cmd_fixity_run(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    """Re-hash originals now (all, or ``--item``) within the bandwidth budget. Exit 0:
    every original checked is intact; 1: an alarm (changed or missing); 3: the store
    could not be read for some (nothing proved about them)."""
    from storage import fixity
    from storage.blobs import open_store
    from storage.errors import NotFound
    from storage.models import EvidenceItem

    db = _open_db(settings)
    item_ids = None
    if args.item:
        with db.read() as session:
            if session.get(EvidenceItem, args.item) is None:
                raise NotFound(f"no item {args.item}", code="ERR_ITEM_NOT_FOUND")
        item_ids = [args.item]
    mb_per_s = args.mb_per_s if args.mb_per_s is not None else settings.fixity_mb_per_s
    summary = fixity.run(db, lambda: open_store(settings), actor=_actor(), item_ids=item_ids, mb_per_s=mb_per_s or None)
    with db.read() as session:
        standing = [i.id for i in fixity.alarms(session)]
    data = {**summary.as_dict(), "standing_alarms": standing}

    def human() -> str:
        lines = [f"{o.item_id}  {o.result:<8} {o.sha256 or '-'}" for o in summary.outcomes]
        lines.append(f"checked {summary.checked}: {summary.ok} intact, {summary.alarms} ALARMS, {summary.errors} "
                     f"unreadable ({data['mb_per_s'] or 0} MB/s)")
        if standing:
            lines.append(f"items in integrity_alarm: {', '.join(standing)}")
        return "\n".join(lines)

    out.emit(data, human)
    if summary.alarms:
        return 1
    return 3 if summary.errors else 0


def cmd_sweep(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    """Remove what crashes left behind and is older than EXHIBIT_SWEEP_GRACE: derivative
    blobs with no row, unfinished uploads with no upload row, work directories. Never an
    original. ``--dry-run``: list only."""
    from storage import sweep
    from storage.blobs import open_store

    db = _open_db(settings)
    temp_root = Path(args.temp_root) if args.temp_root else sweep.default_temp_root()
    report = sweep.run(db, lambda: open_store(settings), grace_seconds=settings.sweep_grace_seconds,
                       temp_root=temp_root, dry_run=args.dry_run)
    data = report.as_dict()

    def human() -> str:
        verb = "would remove" if args.dry_run else "removed"
        lines = [f"{verb} {len(report.orphan_derivatives)} orphan derivative(s), {len(report.orphan_uploads)} "
                 f"unfinished upload(s) with no row, {len(report.work_dirs)} work director(y/ies)"]
        if report.unreferenced_originals:
            lines.append(f"originals no row points to (kept, look into them): {', '.join(report.unreferenced_originals)}")
        lines += [f"error: {e}" for e in report.errors]
        return "\n".join(lines)

    out.emit(data, human)
    return 3 if report.errors else 0


# --- parser ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="exhibit", description="Digital evidence upload and review.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(parent: Any, name: str, func: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    db = sub.add_parser("db", help="database").add_subparsers(dest="sub", required=True)
    add(db, "upgrade", cmd_db_upgrade, "apply migrations as the owner role (EXHIBIT_MIGRATION_DATABASE_URL), "
        "then grant the runtime role of EXHIBIT_DATABASE_URL its privileges")
    p = add(db, "grant", cmd_db_grant, "grant a runtime role exactly its privileges (PostgreSQL)")
    p.add_argument("--runtime-role", required=True)

    from exhibit import cli_users

    cli_users.register(sub, add)  # exhibit users add|list|show|disable|enable|...

    from exhibit import cli_reports

    cli_reports.add_commands(sub.add_parser("reports", help="reports").add_subparsers(dest="sub", required=True), add)

    links = sub.add_parser("links", help="upload links").add_subparsers(dest="sub", required=True)
    p = add(links, "create", cmd_links_create, "issue an upload link for a report")
    p.add_argument("ref")
    p.add_argument("--expires", help="lifetime, e.g. 7d, 48h (default EXHIBIT_LINK_DEFAULT_EXPIRY)")
    p.add_argument("--max-files", type=int)
    p.add_argument("--max-bytes", help="e.g. 10G, 500M")
    p = add(links, "revoke", cmd_links_revoke, "revoke a link")
    p.add_argument("link_id")

    items = sub.add_parser("items", help="evidence items").add_subparsers(dest="sub", required=True)
    p = add(items, "list", cmd_items_list, "list a report's items")
    p.add_argument("ref")
    p = add(items, "show", cmd_items_show, "show one item: state, hashes, verdict, derivatives, jobs")
    p.add_argument("item_id")

    audit = sub.add_parser("audit", help="custody ledger").add_subparsers(dest="sub", required=True)
    p = add(audit, "verify", cmd_audit_verify, "verify the hash chain against a signed checkpoint: the --checkpoint "
            "file, else the newest one stored in the database that the pinned key signed")
    p.add_argument("--checkpoint")
    p.add_argument("--public-key", help="base64 Ed25519 public key checkpoints must be signed with "
                   "(default: EXHIBIT_LEDGER_PUBLIC_KEY; never taken from the checkpoint or the data directory)")
    p = add(audit, "checkpoint", cmd_audit_checkpoint, "write a signed checkpoint of the head")
    p.add_argument("--out", required=True)
    from exhibit.cli_audit import add_commands as add_audit_commands

    add_audit_commands(audit, add, _open_db)

    p = add(sub, "export", cmd_export, "write a report's evidence bundle for court (a custody event records it)")
    p.add_argument("ref")
    p.add_argument("--items", help="comma-separated item ids (default: every item of the report)")
    p.add_argument("--with-derivatives", action="store_true", help="include the viewing copies made from the originals")
    p.add_argument("--include-infected", action="store_true",
                   help="include infected items, in a separate infected/ folder with a warning")
    p.add_argument("--reason", required=True, help="why the evidence leaves the system (recorded)")
    p.add_argument("--out", required=True, help="the .zip to write")
    p = add(sub, "verify-bundle", cmd_verify_bundle, "check an export bundle offline: files, custody events, signature")
    p.add_argument("bundle")
    p.add_argument("--public-key", help="base64 Ed25519 public key the bundle must be signed with "
                   "(default: EXHIBIT_LEDGER_PUBLIC_KEY; never taken from the bundle)")

    apikeys = sub.add_parser("apikeys", help="intake API keys").add_subparsers(dest="sub", required=True)
    for verb in ("create", "add"):  # "add": the name it had first
        p = add(apikeys, verb, cmd_apikeys_add, "create an API key for the force's reporting system (shown once); "
                "it reaches the reports it creates and, with --unit, that unit's reports")
        p.add_argument("name")
        p.add_argument("--unit", help="the unit whose reports the key may read and issue links into")
    add(apikeys, "list", cmd_apikeys_list, "list API keys")
    p = add(apikeys, "revoke", cmd_apikeys_revoke, "revoke an API key")
    p.add_argument("key_id")

    fixity_cmd = sub.add_parser("fixity", help="re-hash originals at rest").add_subparsers(dest="sub", required=True)
    p = add(fixity_cmd, "run", cmd_fixity_run, "re-hash every original (or one) now; exit 1 on an alarm")
    p.add_argument("--item", help="check only this item")
    p.add_argument("--mb-per-s", type=float, help="bandwidth budget (default EXHIBIT_FIXITY_MB_PER_S; 0: none)")

    from exhibit.cli_ops import register as register_ops

    register_ops(sub, add)  # backup, restore

    from exhibit.cli_retention import register as register_retention

    register_retention(sub, add)

    p = add(sub, "sweep", cmd_sweep, "remove orphans crashes left (never an original)")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.add_argument("--temp-root", help="where the workers' exhibit-job-* directories are (default: TMPDIR or /tmp)")

    p = add(sub, "serve", cmd_serve, "the server: a public door (upload pages, intake API) and a staff door "
            "(reviewer UI, admin), worker + clamd")
    p.add_argument("--role", choices=["public", "staff", "all"], default="all",
                   help="public: the public door only; staff: the staff door (and, unless --no-worker, the worker "
                   "and clamd); all: both doors, as two processes (default)")
    p.add_argument("--host", help="public door address (EXHIBIT_HOST)")
    p.add_argument("--port", type=int, help="public door port (EXHIBIT_PORT)")
    p.add_argument("--staff-host", help="staff door address (EXHIBIT_STAFF_HOST)")
    p.add_argument("--staff-port", type=int, help="staff door port (EXHIBIT_STAFF_PORT)")
    p.add_argument("--no-worker", action="store_true", help="do not start the staff side's worker and clamd")
    p.add_argument("--demo", action="store_true", help="create a demo report, link and first admin if missing")

    p = add(sub, "worker", cmd_worker, "processing worker(s)")
    p.add_argument("--concurrency", type=int)
    # Without --lane the worker serves every lane (one slot may take long video, the
    # others only photos); --lane video / --lane default make a dedicated worker.
    p.add_argument("--lane", action="append", choices=["default", "video"],
                   help="serve only this job lane (repeatable); default: all lanes")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(getattr(args, "json", False))
    try:
        settings = Settings.from_env()
    except ValueError as exc:  # a bad EXHIBIT_* value is a usage error, stated plainly
        out.emit({"ok": False, "error": {"code": "ERR_SETTING_INVALID", "message": str(exc)}}, f"error: {exc}")
        return 2
    from exhibit.logs import configure

    configure(settings)
    try:
        result: int = args.func(settings, args, out)
        return result
    except DomainError as exc:
        out.emit({"ok": False, "error": {"code": exc.code, "message": exc.message}}, f"error: {exc.message} ({exc.code})")
        return 2
    except ValueError as exc:
        out.emit({"ok": False, "error": {"code": "ERR_INVALID", "message": str(exc)}}, f"error: {exc}")
        return 2
    except Exception as exc:
        # Not an answer: the command could not run. Exit 3, never 1, so that "the
        # ledger does not verify" is never confused with "the database was down".
        # The driver's own message, not SQLAlchemy's, which quotes the statement's
        # parameters (hashes, emails); the traceback only at DEBUG.
        message = f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}"[:500]
        log.error("cli.failed", extra={"error": message})
        log.debug("cli.failed", exc_info=True)
        out.emit({"ok": False, "error": {"code": "ERR_INTERNAL", "message": message}},
                 f"error: the command could not run: {message}")
        return 3
    finally:
        while _opened:
            _opened.pop().dispose()


if __name__ == "__main__":
    sys.exit(main())
