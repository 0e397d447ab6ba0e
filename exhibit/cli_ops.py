"""``exhibit backup`` and ``exhibit restore``: a consistent copy of a running system, and
putting it back into an empty place (issue 16 item 2; README "Operations").

What a backup holds, in this order:

1. the database, first: SQLite through its online backup API (a consistent snapshot
   while the server writes: never a file copy of a live WAL database); PostgreSQL through
   ``pg_dump --format=custom`` (one consistent snapshot, as the owner role of
   ``EXHIBIT_MIGRATION_DATABASE_URL``; the password goes to pg_dump in its environment,
   never on its command line where ``ps`` shows it);
2. then the filesystem blob store (finished originals, derivatives and unfinished
   uploads). Taken after the database, every original the snapshot names is already
   there: an original is written and synced before the row that names it commits, and
   never changed. Files that arrive after the snapshot are copied too and are harmless
   (``exhibit sweep`` removes what no row names). An S3 store is not copied: its bucket,
   with versioning and Object Lock, is its own backup (replicate it to another region);
3. the keys (server secret, ledger signing key) and, when they are files, the ledger
   checkpoints: without the signing key a restored system could not extend the signed
   history under the same pinned public key. So a backup holds secrets: it is written
   0700/0600 and must be stored encrypted (README "Operations").

The manifest records the SHA-256 of every file. ``restore`` checks the whole backup
against it before writing anything (fixed names only, never paths from the manifest; no
symlinks: a tampered backup must not make a restore run as root read or write elsewhere),
and refuses a place that is not empty (threat: overwriting a live database or
store by mistake, or mixing two histories into one ledger). Afterwards, run
``exhibit audit verify`` and ``exhibit fixity run``: the restored ledger must verify and
every original must hash to its recorded SHA-256.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from storage.errors import DomainError
from storage.settings import Settings

MANIFEST = "manifest.json"
SQLITE_FILE = "exhibit.db"
PG_DUMP_FILE = "exhibit.pgdump"


def register(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``backup`` and ``restore`` to the ``exhibit`` parser."""
    p = add(sub, "backup", cmd_backup, "copy the database (consistently, while it runs), the filesystem blob "
            "store, the keys and file checkpoints into an empty directory")
    p.add_argument("--out", required=True, help="directory to create (must not exist or be empty)")
    p = add(sub, "restore", cmd_restore, "put a backup back into an empty database and store; then run "
            "`exhibit audit verify` and `exhibit fixity run`")
    p.add_argument("--from", dest="source", required=True, help="a directory written by `exhibit backup`")


# --- helpers ---------------------------------------------------------------------------


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:"):
        return None
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path or path == ":memory:":
        raise DomainError("a backup needs a SQLite database file", code="ERR_BACKUP_UNSUPPORTED")
    return Path(unquote(path.split("?", 1)[0]))


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True) or [shutil.which(name) or ""]
    if not found[0]:
        raise DomainError(f"{name} is not installed (Debian: postgresql-client)", code="ERR_BACKUP_TOOL_MISSING")
    return found[0]


# libpq's connection parameters that may come in the URL's query (``?sslmode=require``,
# ``?host=/run/postgresql``) and the environment variables pg_dump/pg_restore read for them.
_PG_QUERY_ENV = {
    "host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR", "sslsni": "PGSSLSNI", "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION", "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING", "requirepeer": "PGREQUIREPEER", "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS", "application_name": "PGAPPNAME", "passfile": "PGPASSFILE",
    "service": "PGSERVICE", "options": "PGOPTIONS", "krbsrvname": "PGKRBSRVNAME",
}


def _pg_env(url: str) -> dict[str, str]:
    """libpq's environment for ``url`` (the password stays out of argv and logs).

    Threat: a backup taken over a connection weaker than the server's own (sslmode and
    the CA pinned in the URL's query, or the operator's PGSSL* variables, silently
    dropped: the owner role's password and every citizen's data sent in clear text or to
    a server whose certificate nobody checked). So the operator's PGSSL* variables are
    kept and the URL's query parameters become the PG* variables libpq reads."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    # Other PG* variables are dropped (they could name another server or user than the URL).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") or k.startswith("PGSSL")}
    for key, value in (("PGHOST", parsed.host), ("PGPORT", parsed.port), ("PGUSER", parsed.username),
                       ("PGPASSWORD", parsed.password), ("PGDATABASE", parsed.database)):
        if value is not None:
            env[key] = str(value)
    for name, given in parsed.query.items():
        variable = _PG_QUERY_ENV.get(name)
        if variable is None:
            continue
        env[variable] = given if isinstance(given, str) else ",".join(given)  # host=a&host=b: a list
    return env


def _run_pg(argv: list[str], url: str) -> None:
    result = subprocess.run(argv, env=_pg_env(url), capture_output=True, text=True,  # noqa: S603 - our argv, no shell
                            timeout=24 * 3600, check=False)
    if result.returncode != 0:
        # pg_dump/pg_restore name the object that failed; no credentials are in their output.
        raise RuntimeError(f"{Path(argv[0]).name} failed: {result.stderr.strip()[-500:]}")


def _filesystem_root(settings: Settings) -> Path | None:
    url = urlsplit(settings.storage_url)
    return Path(unquote(url.path)) if url.scheme == "file" else None


def _checkpoint_dir(settings: Settings) -> Path | None:
    url = urlsplit(settings.checkpoint_url)
    if url.scheme == "file":
        return Path(unquote(url.path))
    if url.scheme == "":
        return Path(settings.checkpoint_url)
    return None


def _empty_dir(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _regular_files(source: Path) -> dict[str, Path]:
    """Every file under ``source`` by relative name; a symlink or anything but a regular
    file or directory is refused (threat: a link planted in a backup makes a restore, often
    run as root, copy /etc/shadow or write through the link)."""
    found: dict[str, Path] = {}
    for root, dirs, files in os.walk(source, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(root) / name
            mode = path.lstat().st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise DomainError(f"{path} is not a regular file (a symlink?): refusing it",
                                  code="ERR_BACKUP_INVALID")
            found[path.relative_to(source).as_posix()] = path
    return found


def _copy_tree(source: Path, target: Path) -> dict[str, str]:
    """Copy regular files (modes kept: finished originals stay read-only), never following
    a link; returns each file's SHA-256 by relative name."""
    hashes: dict[str, str] = {}
    for rel, path in _regular_files(source).items():
        (target / rel).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copy2(path, target / rel, follow_symlinks=False)
        hashes[rel] = _sha256(target / rel)
    return hashes


def _sqlite_copy(source: Path, destination: Path) -> None:
    """Copy a SQLite database through its online backup API (a consistent snapshot even
    of a live database) into ``destination``, created here 0600 and never over a file."""
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(destination)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _ledger_head(settings: Settings) -> int:
    from sqlalchemy import text

    from storage.db import Database

    db = Database(settings.database_url)
    try:
        with db.read() as session:
            row = session.exec(text("SELECT MAX(seq) FROM custody_event")).first()  # type: ignore[call-overload]
        return int(row[0] or 0) if row else 0
    finally:
        db.dispose()


# --- backup ----------------------------------------------------------------------------


def cmd_backup(settings: Settings, args: argparse.Namespace, out: Any) -> int:
    from storage.migrate import refuse_missing_sqlite

    # Before anything is read or made: a backup never creates the database it backs up.
    refuse_missing_sqlite(settings.database_url)
    target = Path(args.out)
    if not _empty_dir(target):
        raise DomainError(f"{target} is not empty: a backup goes into a new directory", code="ERR_BACKUP_TARGET")
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(target, 0o700)  # it holds the keys and every citizen's evidence
    manifest: dict[str, Any] = {"format": 2, "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    manifest["ledger_head_seq"] = _ledger_head(settings)

    # 1. The database, first (see the module docstring for why the order matters).
    sqlite_path = _sqlite_path(settings.database_url)
    if sqlite_path is not None:
        destination = target / SQLITE_FILE
        _sqlite_copy(sqlite_path, destination)
        manifest["database"] = {"kind": "sqlite", "file": SQLITE_FILE, "sha256": _sha256(destination)}
    else:
        dump = target / PG_DUMP_FILE
        _run_pg([_pg_bin("pg_dump"), "--format=custom", "--no-password", "--file", str(dump)],
                settings.migration_database_url)
        os.chmod(dump, 0o600)
        manifest["database"] = {"kind": "postgresql", "file": PG_DUMP_FILE, "sha256": _sha256(dump)}

    # 2. The blob store.
    root = _filesystem_root(settings)
    if root is not None:
        hashes = _copy_tree(root, target / "blobs")
        manifest["blobs"] = {"kind": "filesystem", "dir": "blobs", "files": len(hashes), "sha256": hashes}
    else:
        manifest["blobs"] = {"kind": "s3", "copied": False,
                             "note": "the bucket (versioning, Object Lock) is its own backup: replicate it"}

    # 3. Keys and file checkpoints.
    keys: dict[str, str] = {}
    for name, path in (("secret", settings.secret_key_file), ("signing_key", settings.signing_key_file)):
        if path is not None and Path(path).is_file():
            (target / "keys").mkdir(mode=0o700, exist_ok=True)
            shutil.copy2(path, target / "keys" / name)
            os.chmod(target / "keys" / name, 0o600)
            keys[name] = f"keys/{name}"
    manifest["keys"] = keys
    manifest["keys_sha256"] = {name: _sha256(target / rel) for name, rel in keys.items()}
    checkpoints = _checkpoint_dir(settings)
    if checkpoints is not None and checkpoints.is_dir():
        hashes = _copy_tree(checkpoints, target / "checkpoints")
        manifest["checkpoints"] = {"dir": "checkpoints", "files": len(hashes), "sha256": hashes}
    manifest["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    out.emit({"ok": True, "backup": str(target), **manifest},
             f"backup written to {target}: {manifest['database']['kind']} database, ledger head "
             f"{manifest['ledger_head_seq']}, blobs: {manifest['blobs']['kind']}")
    return 0


# --- restore ---------------------------------------------------------------------------


def _pg_is_empty(url: str) -> bool:
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return not inspect(conn).get_table_names()
    finally:
        engine.dispose()


def _verify_backup(source: Path, manifest: dict[str, Any]) -> None:
    """Check the whole backup against the SHA-256 recorded at backup time, before anything
    is written. Names are the fixed ones ``backup`` writes, never paths from the manifest
    (threat: a tampered manifest with ``/etc/...`` or ``../`` makes a restore, often run
    as root, copy arbitrary files); every file must be a regular file (no symlinks) and
    hash to its recorded value (threat: a changed or planted file becomes evidence or a
    key)."""
    def bad(why: str) -> DomainError:
        return DomainError(f"the backup in {source} fails its check: {why}; nothing was restored",
                           code="ERR_BACKUP_INVALID")

    if manifest.get("format") != 2:
        raise bad("no per-file SHA-256 (written by an older `exhibit backup`)")
    database = manifest.get("database", {})
    expected_file = {"sqlite": SQLITE_FILE, "postgresql": PG_DUMP_FILE}.get(database.get("kind"))
    if expected_file is None or database.get("file") != expected_file:
        raise bad("unexpected database entry")
    expected: dict[str, str] = {expected_file: str(database.get("sha256"))}
    for section in ("blobs", "checkpoints"):
        entry = manifest.get(section)
        if entry is None or (section == "blobs" and entry.get("kind") != "filesystem"):
            continue
        if entry.get("dir") != section:
            raise bad(f"{section} directory named {entry.get('dir')!r}")
        hashes = entry.get("sha256")
        if not isinstance(hashes, dict):
            raise bad(f"no SHA-256 for {section}")
        for rel, digest in hashes.items():
            parts = Path(rel).parts
            if Path(rel).is_absolute() or ".." in parts or not parts:
                raise bad(f"path {rel!r}")
            expected[f"{section}/{rel}"] = str(digest)
        present = set(_regular_files(source / section)) if (source / section).exists() else set()
        if present != set(hashes):
            raise bad(f"the files in {section}/ are not the ones recorded")
    key_hashes = manifest.get("keys_sha256", {})
    for name, rel in manifest.get("keys", {}).items():
        if name not in ("secret", "signing_key") or rel != f"keys/{name}" or name not in key_hashes:
            raise bad(f"key entry {name!r}: {rel!r}")
        expected[rel] = str(key_hashes[name])
    for rel, digest in expected.items():
        path = source / rel
        try:
            mode = path.lstat().st_mode
        except OSError:
            raise bad(f"{rel} is missing") from None
        if not stat.S_ISREG(mode):
            raise bad(f"{rel} is not a regular file")
        if _sha256(path) != digest:
            raise bad(f"{rel} does not match its recorded SHA-256")


def cmd_restore(settings: Settings, args: argparse.Namespace, out: Any) -> int:
    source = Path(args.source)
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError):
        raise DomainError(f"{source} is not a backup written by `exhibit backup`", code="ERR_BACKUP_INVALID") from None

    # Refuse before touching anything: every destination must be empty.
    kind = manifest["database"]["kind"]
    sqlite_path = _sqlite_path(settings.database_url)
    if (kind == "sqlite") != (sqlite_path is not None):
        raise DomainError(f"the backup holds a {kind} database; EXHIBIT_DATABASE_URL names another kind",
                          code="ERR_BACKUP_MISMATCH")
    if sqlite_path is not None and sqlite_path.exists():
        raise DomainError("the database already exists: restore only into an empty place", code="ERR_RESTORE_TARGET")
    if sqlite_path is None and not _pg_is_empty(settings.migration_database_url):
        raise DomainError("the database is not empty: restore only into an empty place", code="ERR_RESTORE_TARGET")
    root = _filesystem_root(settings)
    copy_blobs = manifest["blobs"]["kind"] == "filesystem"
    if copy_blobs:
        if root is None:
            raise DomainError("the backup holds a filesystem store; EXHIBIT_STORAGE_URL is not file://",
                              code="ERR_BACKUP_MISMATCH")
        if any(p.is_file() for p in root.rglob("*")) if root.exists() else False:
            raise DomainError("the blob store is not empty: restore only into an empty place",
                              code="ERR_RESTORE_TARGET")
    key_targets = {"secret": settings.secret_key_file, "signing_key": settings.signing_key_file}
    for name in manifest.get("keys", {}):
        existing = key_targets.get(name)
        if existing is not None and Path(existing).exists():
            raise DomainError(f"a {name} file already exists: restore only into an empty place",
                              code="ERR_RESTORE_TARGET")
    checkpoints = _checkpoint_dir(settings)
    if "checkpoints" in manifest and checkpoints is not None and not _empty_dir(checkpoints):
        # Checked up front like the rest: a refusal half-way leaves a half-restored system.
        raise DomainError("the checkpoint directory is not empty: restore only into an empty place",
                          code="ERR_RESTORE_TARGET")
    _verify_backup(source, manifest)

    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if sqlite_path is not None:
        sqlite_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _sqlite_copy(source / SQLITE_FILE, sqlite_path)
    else:
        _run_pg([_pg_bin("pg_restore"), "--exit-on-error", "--single-transaction", "--no-password",
                 "--dbname", str(_pg_env(settings.migration_database_url).get("PGDATABASE", "")),
                 str(source / PG_DUMP_FILE)], settings.migration_database_url)
    restored_files = len(_copy_tree(source / "blobs", root)) if copy_blobs and root is not None else 0
    for name in manifest.get("keys", {}):
        destination = key_targets.get(name)
        if destination is not None:
            Path(destination).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.copy2(source / "keys" / name, destination, follow_symlinks=False)
            os.chmod(destination, 0o600)
    if "checkpoints" in manifest and checkpoints is not None:
        _copy_tree(source / "checkpoints", checkpoints)  # the fixed name, never the manifest's
    data = {"ok": True, "database": kind, "blobs": manifest["blobs"]["kind"], "blob_files": restored_files,
            "ledger_head_seq": manifest["ledger_head_seq"]}
    out.emit(data, f"restored {kind} database (ledger head {manifest['ledger_head_seq']}) and "
             f"{restored_files} blob files; now run `exhibit audit verify` and `exhibit fixity run`")
    return 0
