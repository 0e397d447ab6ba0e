"""Settings, read once from ``EXHIBIT_*`` environment variables at the entry point.

Every variable the project reads is declared in ``SETTINGS`` below with its default and
its meaning; ``tests/test_readme.py`` fails when one of them is not documented in the
README. Nothing in the project reads ``os.environ`` for an ``EXHIBIT_*`` name anywhere
else: code receives a ``Settings`` object and passes it down.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from storage.netaddr import parse_networks


@dataclass(frozen=True)
class Setting:
    env: str
    default: str
    help: str


# One row per variable: (environment name, default, meaning). A default of "" means
# "derived" (see Settings.from_env) or "unset".
SETTINGS: tuple[Setting, ...] = (
    Setting("EXHIBIT_DATA_DIR", "./var", "Directory for the SQLite database, blobs, keys and clamd state."),
    Setting("EXHIBIT_DATABASE_URL", "", "SQLAlchemy URL. Default: sqlite:///<data dir>/exhibit.db. PostgreSQL: postgresql+psycopg://user:pass@host/db."),
    Setting("EXHIBIT_STORAGE_URL", "", "Blob store. Default: file://<data dir>/blobs. S3: s3://bucket/prefix."),
    Setting("EXHIBIT_S3_ENDPOINT_URL", "", "S3 endpoint (MinIO, moto, a VPC endpoint). Unset: AWS. Credentials come from the usual AWS_* variables."),
    Setting("EXHIBIT_S3_REGION", "us-east-1", "S3 region name."),
    Setting("EXHIBIT_S3_RETENTION_DAYS", "2555", "Object Lock retention (days, COMPLIANCE mode) set on finished originals when the bucket has Object Lock enabled."),
    Setting("EXHIBIT_PUBLIC_URL", "http://localhost:8000", "Base URL citizens reach; upload links are built on it. https:// here turns on Secure cookies."),
    Setting("EXHIBIT_HOST", "127.0.0.1", "Address `exhibit serve` listens on."),
    Setting("EXHIBIT_PORT", "8000", "Port `exhibit serve` listens on."),
    Setting("EXHIBIT_SERVE_SPLIT", "true", "true: `exhibit serve` runs the staff reviewer and the public upload door in two processes behind its one port, so citizens' uploads cannot slow the reviewer; false: one process."),
    Setting("EXHIBIT_SECRET_KEY_FILE", "", "File holding the server secret (random, created on first start). Default: <data dir>/keys/secret."),
    Setting("EXHIBIT_SIGNING_KEY_FILE", "", "Ed25519 private key (PEM) that signs custody checkpoints, created on first use. Default: <data dir>/keys/ledger-ed25519.pem."),
    Setting("EXHIBIT_CLAMD_ADDRESS", "", "clamd to use: unix:///path/clamd.sock or tcp://127.0.0.1:3310. Unset: `exhibit serve` starts and supervises its own clamd."),
    Setting("EXHIBIT_CLAMD_DATABASE_DIR", "", "Signature database for the managed clamd. Unset: /var/lib/clamav when it holds signatures, otherwise the project's own test signatures (announced loudly)."),
    Setting("EXHIBIT_LINK_DEFAULT_EXPIRY", "7d", "Lifetime of a new upload link when none is given."),
    Setting("EXHIBIT_LINK_MAX_FILES", "50", "Default per-link file quota."),
    Setting("EXHIBIT_LINK_MAX_BYTES", "20G", "Default per-link byte quota."),
    Setting("EXHIBIT_MAX_FILE_BYTES", "10G", "Largest single file accepted."),
    Setting("EXHIBIT_UPLOAD_EXPIRY", "24h", "How long an unfinished resumable upload is kept before it is removed."),
    Setting("EXHIBIT_UPLOAD_IDLE_TIMEOUT", "60s", "An upload request that sends no bytes for this long is cut off (slow-body attacks); what it sent is kept for resuming."),
    Setting("EXHIBIT_JOB_LEASE_SECONDS", "60", "Worker job lease; a worker heartbeats well inside it."),
    Setting("EXHIBIT_JOB_MAX_ATTEMPTS", "5", "Attempts before a job is dead, its last error kept."),
    Setting("EXHIBIT_WORKER_CONCURRENCY", "2", "Jobs one worker process runs at once (at least 2 unless the worker serves one lane: one slot takes long video, the others only the default lane, so photos keep flowing behind a long transcode)."),
    Setting("EXHIBIT_JOB_MAX_SECONDS", "4h", "Time budget of one processing job attempt; ffmpeg's own limits come from the file's real packet count and size and are cut to what is left of it."),
    Setting("EXHIBIT_SESSION_IDLE_MINUTES", "30", "Staff session idle timeout."),
    Setting("EXHIBIT_SESSION_ABSOLUTE_HOURS", "12", "Staff session absolute lifetime."),
    Setting("EXHIBIT_OFFICER_UNIT_ACCESS", "false", "true: an officer also sees every report of their own unit (the force's policy), not only those they own or are assigned to."),
    Setting("EXHIBIT_LOG_LEVEL", "INFO", "Python log level."),
    Setting("EXHIBIT_TRUSTED_PROXIES", "", "Addresses or CIDR ranges (comma-separated) of the reverse proxies in front of Exhibit. Only from these peers are X-Forwarded-For / Forwarded believed, read from the right up to the first address that is not a trusted proxy; everyone else's are ignored. Unset: the TCP peer is the client (sign-in and link throttles, session and ledger addresses)."),
    Setting("EXHIBIT_FIXITY_MB_PER_S", "50", "Bandwidth budget of the fixity job (MB/s, 10^6 bytes) that re-hashes every original at rest, so it never starves uploads and reviewers of the store."),
    Setting("EXHIBIT_FIXITY_INTERVAL", "30d", "Each original is re-hashed by the worker's fixity job when its last check (or its receipt) is older than this; the oldest-checked go first."),
    Setting("EXHIBIT_SWEEP_GRACE", "24h", "The sweep removes orphans (derivative blobs with no row, unfinished uploads with no upload row, `exhibit-job-*` work directories) only when older than this, so work in flight is never taken."),
    Setting("EXHIBIT_REQUIRE_CONTACT", "false", "true: the citizen upload page requires a name and contact details; false: both are optional."),
)


def parse_bytes(text: str) -> int:
    """'10G' -> 10 GiB, '512M' -> 512 MiB, '1024' -> 1024 bytes."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def parse_duration(text: str) -> int:
    """'7d' -> seconds, '12h', '30m', '45s', or a bare number of seconds."""
    text = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./var")
    database_url: str = ""
    storage_url: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_retention_days: int = 2555
    public_url: str = "http://localhost:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    secret_key_file: Path | None = None
    signing_key_file: Path | None = None
    clamd_address: str | None = None
    clamd_database_dir: Path | None = None
    link_default_expiry_seconds: int = 7 * 86400
    link_max_files: int = 50
    link_max_bytes: int = 20 << 30
    max_file_bytes: int = 10 << 30
    upload_expiry_seconds: int = 24 * 3600
    upload_idle_timeout_seconds: float = 60.0
    job_lease_seconds: int = 60
    job_max_attempts: int = 5
    worker_concurrency: int = 2
    job_max_seconds: int = 4 * 3600
    session_idle_minutes: int = 30
    session_absolute_hours: int = 12
    officer_unit_access: bool = False
    log_level: str = "INFO"
    require_contact: bool = False
    fixity_mb_per_s: float = 50.0
    fixity_interval_seconds: int = 30 * 86400
    sweep_grace_seconds: int = 24 * 3600
    serve_split: bool = True
    trusted_proxies: tuple[str, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Derived defaults live here so that Settings(data_dir=tmp) in a test is complete.
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir.resolve() / 'exhibit.db'}")
        if not self.storage_url:
            object.__setattr__(self, "storage_url", f"file://{self.data_dir.resolve() / 'blobs'}")
        if self.secret_key_file is None:
            object.__setattr__(self, "secret_key_file", self.data_dir / "keys" / "secret")
        if self.signing_key_file is None:
            object.__setattr__(self, "signing_key_file", self.data_dir / "keys" / "ledger-ed25519.pem")

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)

        def get(name: str) -> str:
            for s in SETTINGS:
                if s.env == name:
                    return env.get(name, s.default)
            raise KeyError(name)  # a setting read here must be declared above

        def opt(name: str) -> str | None:
            return get(name) or None

        def opt_path(name: str) -> Path | None:
            value = get(name)
            return Path(value) if value else None

        def number(name: str, parse: Callable[[str], int] = int) -> int:
            # A zero or negative lease, attempt count or quota is never meant: a lease
            # of 0 lapses as it is granted and hands every job to two workers at once.
            raw = get(name)
            try:
                value = parse(raw)
            except ValueError:
                raise ValueError(f"{name}: {raw!r} is not a valid value") from None
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {raw!r}")
            return value

        return cls(
            data_dir=Path(get("EXHIBIT_DATA_DIR")),
            database_url=get("EXHIBIT_DATABASE_URL"),
            storage_url=get("EXHIBIT_STORAGE_URL"),
            s3_endpoint_url=opt("EXHIBIT_S3_ENDPOINT_URL"),
            s3_region=get("EXHIBIT_S3_REGION"),
            s3_retention_days=number("EXHIBIT_S3_RETENTION_DAYS"),
            public_url=get("EXHIBIT_PUBLIC_URL").rstrip("/"),
            host=get("EXHIBIT_HOST"),
            port=number("EXHIBIT_PORT"),
            secret_key_file=opt_path("EXHIBIT_SECRET_KEY_FILE"),
            signing_key_file=opt_path("EXHIBIT_SIGNING_KEY_FILE"),
            clamd_address=opt("EXHIBIT_CLAMD_ADDRESS"),
            clamd_database_dir=opt_path("EXHIBIT_CLAMD_DATABASE_DIR"),
            link_default_expiry_seconds=number("EXHIBIT_LINK_DEFAULT_EXPIRY", parse_duration),
            link_max_files=number("EXHIBIT_LINK_MAX_FILES"),
            link_max_bytes=number("EXHIBIT_LINK_MAX_BYTES", parse_bytes),
            max_file_bytes=number("EXHIBIT_MAX_FILE_BYTES", parse_bytes),
            upload_expiry_seconds=number("EXHIBIT_UPLOAD_EXPIRY", parse_duration),
            upload_idle_timeout_seconds=parse_duration(get("EXHIBIT_UPLOAD_IDLE_TIMEOUT")),
            job_lease_seconds=number("EXHIBIT_JOB_LEASE_SECONDS"),
            job_max_attempts=number("EXHIBIT_JOB_MAX_ATTEMPTS"),
            worker_concurrency=number("EXHIBIT_WORKER_CONCURRENCY"),
            job_max_seconds=number("EXHIBIT_JOB_MAX_SECONDS", parse_duration),
            session_idle_minutes=number("EXHIBIT_SESSION_IDLE_MINUTES"),
            session_absolute_hours=number("EXHIBIT_SESSION_ABSOLUTE_HOURS"),
            officer_unit_access=get("EXHIBIT_OFFICER_UNIT_ACCESS").strip().lower() in {"1", "true", "yes", "on"},
            log_level=get("EXHIBIT_LOG_LEVEL"),
            require_contact=get("EXHIBIT_REQUIRE_CONTACT").strip().lower() in ("1", "true", "yes", "on"),
            serve_split=get("EXHIBIT_SERVE_SPLIT").strip().lower() in ("1", "true", "yes", "on"),
            trusted_proxies=trusted_proxies(get("EXHIBIT_TRUSTED_PROXIES")),
            fixity_mb_per_s=positive_float("EXHIBIT_FIXITY_MB_PER_S", get("EXHIBIT_FIXITY_MB_PER_S")),
            fixity_interval_seconds=number("EXHIBIT_FIXITY_INTERVAL", parse_duration),
            sweep_grace_seconds=number("EXHIBIT_SWEEP_GRACE", parse_duration),
        )


def positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}: {raw!r} is not a number") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"{name} must be a positive number, not {raw!r}")
    return value


def trusted_proxies(raw: str) -> tuple[str, ...]:
    """``"10.0.0.0/8, 192.0.2.1"`` -> ("10.0.0.0/8", "192.0.2.1"); a value that is not an
    address or a network stops the start (a typo must not silently trust nobody, or all)."""
    values = tuple(v for v in raw.replace(",", " ").split() if v)
    try:
        parse_networks(values)
    except ValueError:
        raise ValueError(f"EXHIBIT_TRUSTED_PROXIES: {raw!r} is not a list of addresses or networks") from None
    return values
