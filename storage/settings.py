"""Settings, read once from ``EXHIBIT_*`` environment variables at the entry point.

Every variable the project reads is declared in ``SETTINGS`` below with its default and
its meaning; ``tests/test_readme.py`` fails when one of them is not documented in the
README. Nothing in the project reads ``os.environ`` for an ``EXHIBIT_*`` name anywhere
else: code receives a ``Settings`` object and passes it down.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
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
    Setting("EXHIBIT_MIGRATION_DATABASE_URL", "", "URL of the owner role, used only by `exhibit db upgrade` (which then grants the runtime role in EXHIBIT_DATABASE_URL its privileges). Default: EXHIBIT_DATABASE_URL (SQLite, development)."),
    Setting("EXHIBIT_STORAGE_URL", "", "Blob store. Default: file://<data dir>/blobs. S3: s3://bucket/prefix."),
    Setting("EXHIBIT_S3_ENDPOINT_URL", "", "S3 endpoint (MinIO, moto, a VPC endpoint). Unset: AWS. Credentials come from the usual AWS_* variables."),
    Setting("EXHIBIT_S3_REGION", "us-east-1", "S3 region name."),
    Setting("EXHIBIT_S3_RETENTION_DAYS", "2555", "Object Lock retention (days, COMPLIANCE mode) of the signed custody checkpoints written to an S3 bucket with Object Lock enabled (originals: EXHIBIT_S3_SEAL_LOCK_DAYS, then their retention date)."),
    Setting("EXHIBIT_S3_SEAL_LOCK_DAYS", "30", "Object Lock retention (days, COMPLIANCE mode) an original is born and sealed with, until the worker's retention round (every minute) or `exhibit retention run` raises it to its report's retention date. Keep it below the shortest retention period (EXHIBIT_RETENTION_DECLINED): COMPLIANCE retention can be extended but never shortened, and a disposal it still forbids is reported, not done."),
    Setting("EXHIBIT_PUBLIC_URL", "http://localhost:8000", "Base URL citizens reach; upload links are built on it. https:// here turns on Secure cookies."),
    Setting("EXHIBIT_HOST", "127.0.0.1", "Address the public door (citizens' upload pages and the intake API) listens on."),
    Setting("EXHIBIT_PORT", "8000", "Port of the public door."),
    Setting("EXHIBIT_STAFF_HOST", "127.0.0.1", "Address the staff door (reviewer UI, admin, detailed /healthz) listens on. Keep it on an internal network: it must never be reachable from the internet."),
    Setting("EXHIBIT_STAFF_PORT", "8001", "Port of the staff door."),
    Setting("EXHIBIT_HEADER_TIMEOUT", "10s", "A connection must deliver a complete request's headers within this time (from connecting, or from the end of its previous response), or it is closed (slow-loris, LD-09). Applies to both doors."),
    Setting("EXHIBIT_KEEPALIVE_TIMEOUT", "5s", "An idle keep-alive connection is closed after this time. Both doors."),
    Setting("EXHIBIT_MAX_CONNECTIONS_PER_ADDRESS", "256", "Open connections one client address may hold on a door; more are refused (503, logged once per address per minute). Behind a reverse proxy every connection has the proxy's address: raise it above the proxy's pool."),
    Setting("EXHIBIT_MAX_CONNECTIONS", "4096", "Open connections a door holds in total (lowered to fit the process's file limit); more are refused."),
    Setting("EXHIBIT_LOG_FORMAT", "json", "json: one JSON object per log line (time, level, logger, message, request_id and the event's fields, secrets redacted); text: the same as readable text."),
    Setting("EXHIBIT_SECRET_KEY_FILE", "", "File holding the server secret (random, created on first start). Default: <data dir>/keys/secret."),
    Setting("EXHIBIT_SIGNING_KEY_FILE", "", "Ed25519 private key (PEM) that signs custody checkpoints, created on first use. Default: <data dir>/keys/ledger-ed25519.pem."),
    Setting("EXHIBIT_LEDGER_PUBLIC_KEY", "", "Base64 Ed25519 public key that custody checkpoints must be signed with (`exhibit audit verify`). Never read from a checkpoint or the data directory."),
    Setting("EXHIBIT_CHECKPOINT_URL", "", "Where the periodic ledger verifier writes signed checkpoints: a directory (file:///path) or s3://bucket/prefix (a bucket with Object Lock). Default: file://<data dir>/checkpoints, which is NOT separate from the data (logged as a warning)."),
    Setting("EXHIBIT_CHECKPOINT_INTERVAL", "15m", "How often the ledger verifier (in `exhibit worker`, and in `exhibit serve` beside its worker, outside the public door) checks the chain and writes a checkpoint."),
    Setting("EXHIBIT_METRICS_ALLOW", "127.0.0.0/8 ::1/128", "Client addresses or networks (space- or comma-separated) that may read the staff door's Prometheus `/metrics` and the details of its `/readyz`; anyone else gets 404 (and /readyz without details). Default: loopback only; name your monitoring network, never a range staff or partners browse from (behind a proxy every client has a private address). The public door has neither."),
    Setting("EXHIBIT_CLAMD_ADDRESS", "", "clamd to use: unix:///path/clamd.sock or tcp://127.0.0.1:3310. Unset: `exhibit serve` starts and supervises its own clamd."),
    Setting("EXHIBIT_CLAMD_DATABASE_DIR", "", "Signature database for the managed clamd. Unset: /var/lib/clamav when it holds signatures, otherwise the project's own test signatures (announced loudly)."),
    Setting("EXHIBIT_LINK_DEFAULT_EXPIRY", "7d", "Lifetime of a new upload link when none is given."),
    Setting("EXHIBIT_LINK_MAX_FILES", "50", "Default per-link file quota."),
    Setting("EXHIBIT_LINK_MAX_BYTES", "20G", "Default per-link byte quota."),
    Setting("EXHIBIT_API_LINK_MAX_FILES", "100", "Most files a link issued through the intake API may allow; a request above it is refused (ERR_ABOVE_LIMIT)."),
    Setting("EXHIBIT_API_LINK_MAX_BYTES", "50G", "Largest byte quota a link issued through the intake API may have; a request above it is refused."),
    Setting("EXHIBIT_API_LINK_MAX_EXPIRY", "30d", "Longest lifetime of a link issued through the intake API; a request above it is refused."),
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
    Setting("EXHIBIT_TIME_ZONE", "Europe/London", "The force's time zone (an IANA name) for times shown to staff; each shows its UTC time on hover. The ledger, logs and exports stay in UTC."),
    Setting("EXHIBIT_TRUSTED_PROXIES", "", "Addresses or CIDR ranges (comma-separated) of the reverse proxies in front of Exhibit. Only from these peers are X-Forwarded-For / Forwarded believed, read from the right up to the first address that is not a trusted proxy; everyone else's are ignored. Unset: the TCP peer is the client (sign-in and link throttles, session and ledger addresses)."),
    Setting("EXHIBIT_FIXITY_MB_PER_S", "50", "Bandwidth budget of the fixity job (MB/s, 10^6 bytes) that re-hashes every original at rest, so it never starves uploads and reviewers of the store."),
    Setting("EXHIBIT_FIXITY_INTERVAL", "30d", "Each original is re-hashed by the worker's fixity job when its last check (or its receipt) is older than this; the oldest-checked go first."),
    Setting("EXHIBIT_SWEEP_GRACE", "24h", "The sweep removes orphans (derivative blobs with no row, unfinished uploads with no upload row, `exhibit-job-*` work directories) only when older than this, so work in flight is never taken."),
    Setting("EXHIBIT_RETENTION_DEFAULT", "6y", "Retention period of a report whose kind EXHIBIT_RETENTION_BY_KIND does not name, counted from its creation: Ny (calendar years), or a duration (90d, 12w). MoPI's minimum review period for most offences is six years."),
    Setting("EXHIBIT_RETENTION_BY_KIND", "crime=6y,rtc=6y,asb=3y,complaint=6y,other=2y", "Retention period per report kind (kind=period, comma-separated), counted from the report's creation. A report's date can be changed with a reason (`exhibit retention set`, the report page); evidence past it and not under legal hold is disposed of by `exhibit retention run` and the worker."),
    Setting("EXHIBIT_RETENTION_DECLINED", "90d", "Retention of an item declined at triage, counted from its receipt, when its report's date was not set by a person (then that date governs every item): declined evidence is kept no longer than needed (UK GDPR storage limitation)."),
    Setting("EXHIBIT_REQUIRE_CONTACT", "false", "true: the citizen upload page requires a name and contact details; false: both are optional."),
)


# Strict number parsing for settings, the command line and every staff form. A float
# parse let "infd" or "1e400G" through as infinity (an OverflowError, a 500 in a form)
# and "nan"/"-1G" as nonsense: only ASCII digits with an optional short fraction and one
# known unit are numbers here; the value is computed exactly (Decimal) and every failure
# is a ValueError, so callers have one thing to catch.
_NUMBER = re.compile(r"([0-9]{1,15})(?:\.([0-9]{1,6}))?\s*([a-z]*)", re.ASCII)
_BYTE_UNITS = {"": 1, "b": 1} | {
    spelling: 1 << (10 * (i + 1)) for i, p in enumerate("kmgtp") for spelling in (p, f"{p}b", f"{p}ib")
}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _parse_scaled(text: str, units: Mapping[str, int], what: str) -> int:
    match = _NUMBER.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"{text[:40]!r} is not {what}")
    whole, fraction, unit = match.groups()
    if unit not in units:
        raise ValueError(f"{text[:40]!r} is not {what}")
    value = Decimal(f"{whole}.{fraction or 0}") * units[unit]
    return int(value)


def parse_bytes(text: str) -> int:
    """'10G' -> 10 GiB, '512M' / '512MB' / '512MiB' -> 512 MiB, '1024' -> 1024 bytes.
    Raises ValueError for anything else (signs, exponents, inf, nan, unknown units)."""
    return _parse_scaled(text, _BYTE_UNITS, "a size")


def parse_duration(text: str) -> int:
    """'7d' -> seconds, '12h', '30m', '45s', '2w', or a bare number of seconds.
    Raises ValueError for anything else (signs, exponents, inf, nan, unknown units)."""
    return _parse_scaled(text, _DURATION_UNITS, "a duration")


def parse_count(text: str) -> int:
    """A whole number written in ASCII digits, nothing else (no sign, no fraction)."""
    stripped = text.strip()
    if not re.fullmatch(r"[0-9]{1,15}", stripped, re.ASCII):
        raise ValueError(f"{text[:40]!r} is not a whole number")
    return int(stripped)


def _choice(name: str, raw: str, allowed: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./var")
    database_url: str = ""
    migration_database_url: str = ""
    storage_url: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_retention_days: int = 2555
    s3_seal_lock_days: int = 30
    public_url: str = "http://localhost:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    staff_host: str = "127.0.0.1"
    staff_port: int = 8001
    header_timeout_seconds: float = 10.0
    keepalive_timeout_seconds: float = 5.0
    max_connections_per_address: int = 256
    max_connections: int = 4096
    log_format: str = "json"
    secret_key_file: Path | None = None
    signing_key_file: Path | None = None
    ledger_public_key: str | None = None
    checkpoint_url: str = ""
    checkpoint_interval_seconds: int = 900
    clamd_address: str | None = None
    clamd_database_dir: Path | None = None
    link_default_expiry_seconds: int = 7 * 86400
    link_max_files: int = 50
    link_max_bytes: int = 20 << 30
    api_link_max_files: int = 100
    api_link_max_bytes: int = 50 << 30
    api_link_max_expiry_seconds: int = 30 * 86400
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
    time_zone: str = "Europe/London"
    require_contact: bool = False
    fixity_mb_per_s: float = 50.0
    fixity_interval_seconds: int = 30 * 86400
    sweep_grace_seconds: int = 24 * 3600
    retention_default: str = "6y"
    retention_by_kind: str = "crime=6y,rtc=6y,asb=3y,complaint=6y,other=2y"
    retention_declined: str = "90d"
    trusted_proxies: tuple[str, ...] = ()
    # Loopback only (AC-17): behind the staff proxy every client, partners of other
    # organisations too, comes from a private address, so "private networks" meant everyone.
    metrics_allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Derived defaults live here so that Settings(data_dir=tmp) in a test is complete.
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir.resolve() / 'exhibit.db'}")
        if not self.migration_database_url:
            object.__setattr__(self, "migration_database_url", self.database_url)
        if not self.checkpoint_url:
            object.__setattr__(self, "checkpoint_url", f"file://{self.data_dir.resolve() / 'checkpoints'}")
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
            migration_database_url=get("EXHIBIT_MIGRATION_DATABASE_URL"),
            storage_url=get("EXHIBIT_STORAGE_URL"),
            s3_endpoint_url=opt("EXHIBIT_S3_ENDPOINT_URL"),
            s3_region=get("EXHIBIT_S3_REGION"),
            s3_retention_days=number("EXHIBIT_S3_RETENTION_DAYS"),
            s3_seal_lock_days=number("EXHIBIT_S3_SEAL_LOCK_DAYS"),
            public_url=get("EXHIBIT_PUBLIC_URL").rstrip("/"),
            host=get("EXHIBIT_HOST"),
            port=number("EXHIBIT_PORT"),
            staff_host=get("EXHIBIT_STAFF_HOST"),
            staff_port=number("EXHIBIT_STAFF_PORT"),
            header_timeout_seconds=number("EXHIBIT_HEADER_TIMEOUT", parse_duration),
            keepalive_timeout_seconds=number("EXHIBIT_KEEPALIVE_TIMEOUT", parse_duration),
            max_connections_per_address=number("EXHIBIT_MAX_CONNECTIONS_PER_ADDRESS"),
            max_connections=number("EXHIBIT_MAX_CONNECTIONS"),
            log_format=_choice("EXHIBIT_LOG_FORMAT", get("EXHIBIT_LOG_FORMAT"), ("json", "text")),
            secret_key_file=opt_path("EXHIBIT_SECRET_KEY_FILE"),
            signing_key_file=opt_path("EXHIBIT_SIGNING_KEY_FILE"),
            ledger_public_key=opt("EXHIBIT_LEDGER_PUBLIC_KEY"),
            checkpoint_url=get("EXHIBIT_CHECKPOINT_URL"),
            checkpoint_interval_seconds=number("EXHIBIT_CHECKPOINT_INTERVAL", parse_duration),
            clamd_address=opt("EXHIBIT_CLAMD_ADDRESS"),
            clamd_database_dir=opt_path("EXHIBIT_CLAMD_DATABASE_DIR"),
            link_default_expiry_seconds=number("EXHIBIT_LINK_DEFAULT_EXPIRY", parse_duration),
            link_max_files=number("EXHIBIT_LINK_MAX_FILES"),
            link_max_bytes=number("EXHIBIT_LINK_MAX_BYTES", parse_bytes),
            api_link_max_files=number("EXHIBIT_API_LINK_MAX_FILES"),
            api_link_max_bytes=number("EXHIBIT_API_LINK_MAX_BYTES", parse_bytes),
            api_link_max_expiry_seconds=number("EXHIBIT_API_LINK_MAX_EXPIRY", parse_duration),
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
            time_zone=time_zone(get("EXHIBIT_TIME_ZONE")),
            require_contact=get("EXHIBIT_REQUIRE_CONTACT").strip().lower() in ("1", "true", "yes", "on"),
            trusted_proxies=trusted_proxies(get("EXHIBIT_TRUSTED_PROXIES")),
            metrics_allow=networks("EXHIBIT_METRICS_ALLOW", get("EXHIBIT_METRICS_ALLOW")),
            fixity_mb_per_s=positive_float("EXHIBIT_FIXITY_MB_PER_S", get("EXHIBIT_FIXITY_MB_PER_S")),
            fixity_interval_seconds=number("EXHIBIT_FIXITY_INTERVAL", parse_duration),
            sweep_grace_seconds=number("EXHIBIT_SWEEP_GRACE", parse_duration),
            retention_default=checked("EXHIBIT_RETENTION_DEFAULT", get("EXHIBIT_RETENTION_DEFAULT"), parse_period),
            retention_by_kind=checked("EXHIBIT_RETENTION_BY_KIND", get("EXHIBIT_RETENTION_BY_KIND"), parse_periods),
            retention_declined=checked("EXHIBIT_RETENTION_DECLINED", get("EXHIBIT_RETENTION_DECLINED"), parse_period),
        )


@dataclass(frozen=True)
class Period:
    """A retention period: calendar years, or an exact number of seconds."""

    years: int = 0
    seconds: int = 0

    def after(self, start: dt.datetime) -> dt.datetime:
        if self.years:
            try:
                return start.replace(year=start.year + self.years)
            except ValueError:  # 29 February into a year without one
                return start.replace(year=start.year + self.years, day=28)
        return start + dt.timedelta(seconds=self.seconds)

    def before(self, end: dt.datetime) -> dt.datetime:
        """The latest start whose period ends by ``end``."""
        if self.years:
            try:
                return end.replace(year=end.year - self.years)
            except ValueError:
                return end.replace(year=end.year - self.years, day=28)
        return end - dt.timedelta(seconds=self.seconds)

    def __str__(self) -> str:
        return f"{self.years}y" if self.years else f"{self.seconds // 86400}d" if self.seconds % 86400 == 0 \
            else f"{self.seconds}s"


def parse_period(text: str) -> Period:
    """'6y' -> six calendar years; '90d', '12w', '36h' -> that duration. A zero or an
    unparsable period is a ValueError (a zero retention would dispose of evidence at once)."""
    raw = text.strip().lower()
    match = re.fullmatch(r"([0-9]{1,3})\s*y", raw, re.ASCII)
    period = Period(years=int(match.group(1))) if match else Period(seconds=parse_duration(raw))
    if period.years == 0 and period.seconds == 0:
        raise ValueError(f"{text[:40]!r} is not a retention period")
    return period


def parse_periods(text: str) -> dict[str, Period]:
    """'crime=6y, asb=3y' -> {"crime": 6y, "asb": 3y}; a kind that is not a report kind
    is refused (a typo must not silently fall back to the default)."""
    from storage.models import ReportKind  # here: importing the settings does not import the ORM

    kinds = tuple(k.value for k in ReportKind)
    found: dict[str, Period] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        kind, sep, value = part.partition("=")
        kind = kind.strip().lower()
        if not sep or kind not in kinds:
            raise ValueError(f"{part[:40]!r} is not kind=period with kind one of {', '.join(kinds)}")
        found[kind] = parse_period(value)
    return found


def checked(name: str, raw: str, parse: Callable[[str], object]) -> str:
    try:
        parse(raw)
    except ValueError:
        raise ValueError(f"{name}: {raw!r} is not a valid value") from None
    return raw
def time_zone(raw: str) -> str:
    """An IANA zone name zoneinfo knows; a typo stops the start (times shown in the wrong
    zone would mislead a statement)."""
    import zoneinfo

    name = raw.strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"EXHIBIT_TIME_ZONE: {raw!r} is not a time zone (for example Europe/London)") from None
    return name


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
    return networks("EXHIBIT_TRUSTED_PROXIES", raw)


def networks(name: str, raw: str) -> tuple[str, ...]:
    values = tuple(v for v in raw.replace(",", " ").split() if v)
    try:
        parse_networks(values)
    except ValueError:
        raise ValueError(f"{name}: {raw!r} is not a list of addresses or networks") from None
    return values
