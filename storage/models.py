"""The schema: SQLModel tables of the system of record.

Conventions: ids are 32 hex characters from a CSPRNG (``new_id``) so that an id in a URL
says nothing about how many rows exist; sizes, offsets and sequence numbers are 64-bit
(``BigInteger``: SQLModel's ``int`` is a 32-bit INTEGER on PostgreSQL); every timestamp is
a timezone-aware UTC ``datetime`` (``UTCDateTime``). Free text from citizens or files is
stored as data and capped in length by the code that writes it.

Migrations live in ``storage/migrations``; a change here needs a migration there.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

# 64-bit on PostgreSQL; on SQLite only "INTEGER PRIMARY KEY" autoincrements (it is 64-bit there).
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def new_id() -> str:
    return secrets.token_hex(16)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores UTC, returns aware UTC datetimes on SQLite and PostgreSQL alike."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: every timestamp in Exhibit is UTC-aware")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def created() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def big(*, default: int | None = 0, nullable: bool = False, index: bool = False) -> Any:
    return Field(default=default, sa_type=sa.BigInteger, nullable=nullable, index=index)


def json_col(*, nullable: bool = True) -> Any:
    return Field(default=None, sa_type=sa.JSON, nullable=nullable)


# --- enums (stored as short strings; the legal values are checked in code) ------------


class Role(enum.StrEnum):
    ADMIN = "admin"
    OFFICER = "officer"
    # Sees its unit's reports and assigns them to officers (issue 15 item 1).
    SUPERVISOR = "supervisor"
    PARTNER = "partner"
    AUDITOR = "auditor"


class ReportKind(enum.StrEnum):
    CRIME = "crime"
    RTC = "rtc"
    ASB = "asb"
    COMPLAINT = "complaint"
    OTHER = "other"


class UploadState(enum.StrEnum):
    OPEN = "open"  # receiving bytes
    COMPLETE = "complete"  # sealed, evidence item created
    TERMINATED = "terminated"  # deleted by the client before completion
    EXPIRED = "expired"  # removed by the expiry sweep
    REFUSED = "refused"  # refused while streaming (type, quota); bytes deleted


class Triage(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"


# --- people ----------------------------------------------------------------------------


class Organisation(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=200, unique=True)
    is_partner: bool = False
    created_at: dt.datetime = created()


class User(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    email: str = Field(max_length=320, unique=True, index=True)
    display_name: str = Field(default="", max_length=200)
    role: str = Field(max_length=16)
    org_id: str | None = Field(default=None, foreign_key="organisation.id", max_length=32)
    unit: str | None = Field(default=None, max_length=100)
    password_hash: str | None = Field(default=None, max_length=255)
    totp_secret: str | None = Field(default=None, max_length=64)
    mfa_enrolled: bool = False
    last_totp_step: int | None = big(default=None, nullable=True)
    disabled: bool = False
    created_at: dt.datetime = created()
    # A one-time password (made by the system, shown once to an admin): its owner must
    # choose their own at first sign-in before anything else (issue 15 item 2).
    must_change_password: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})


class StaffSession(SQLModel, table=True):
    """A server-side staff session. ``id`` is the SHA-256 of the cookie value, so a
    database read does not hand out live session cookies."""

    __tablename__ = "staff_session"
    id: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(foreign_key="user.id", index=True, max_length=32)
    csrf_token: str = Field(max_length=64)
    mfa_passed: bool = False
    created_at: dt.datetime = created()
    last_seen_at: dt.datetime = created()
    expires_at: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    revoked_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    client_ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=300)


class ApiKey(SQLModel, table=True):
    """Key for the force's reporting system. Only the SHA-256 of the key is stored."""

    __tablename__ = "api_key"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    key_hash: str = Field(max_length=64, unique=True)
    created_at: dt.datetime = created()
    revoked_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    # Scope (AC-01): a key reaches the reports it created, and those of this unit when set.
    unit: str | None = Field(default=None, max_length=100)


# --- the matter ------------------------------------------------------------------------


class Report(SQLModel, table=True):
    # Keyset pagination of the reviewer's report list (newest first, optionally by kind)
    # reads these indexes in order instead of sorting 100,000 rows (migration 0004).
    __table_args__ = (
        sa.Index("ix_report_created_id", "created_at", "id"),
        sa.Index("ix_report_kind_created_id", "kind", "created_at", "id"),
        # A supervisor's list (their unit's reports, newest first) and the unit filter
        # read this index in order (migration 0013_assign).
        sa.Index("ix_report_unit_created_id", "unit", "created_at", "id"),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    reference: str = Field(max_length=64, unique=True, index=True)
    kind: str = Field(max_length=16)
    title: str = Field(default="", max_length=300)
    owner_id: str | None = Field(default=None, foreign_key="user.id", max_length=32, index=True)
    unit: str | None = Field(default=None, max_length=100)
    # The intake API key that created the report (None: created by staff): its scope.
    created_by_api_key_id: str | None = Field(default=None, foreign_key="api_key.id", max_length=32, index=True)
    closed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)


class ReportAssignment(SQLModel, table=True):
    __tablename__ = "report_assignment"
    report_id: str = Field(foreign_key="report.id", primary_key=True, max_length=32)
    user_id: str = Field(foreign_key="user.id", primary_key=True, max_length=32, index=True)
    assigned_by: str | None = Field(default=None, max_length=32)
    created_at: dt.datetime = created()


class ReportSeen(SQLModel, table=True):
    """When a user last looked at a report (its page): "My reports" counts the evidence
    received since then as new (migration 0013_assign)."""

    __tablename__ = "report_seen"
    user_id: str = Field(foreign_key="user.id", primary_key=True, max_length=32)
    report_id: str = Field(foreign_key="report.id", primary_key=True, max_length=32)
    seen_at: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)


class UploadLink(SQLModel, table=True):
    """A signed, expiring upload link. The token is 256 random bits shown once; only its
    SHA-256 is stored, so a database leak does not open any link."""

    __tablename__ = "upload_link"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    report_id: str = Field(foreign_key="report.id", index=True, max_length=32)
    token_hash: str = Field(max_length=64, unique=True)
    created_by: str | None = Field(default=None, max_length=64)
    created_at: dt.datetime = created()
    expires_at: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    revoked_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    revoked_by: str | None = Field(default=None, max_length=64)
    max_files: int = big(default=50)
    max_bytes: int = big(default=0)
    used_files: int = big(default=0)  # files committed as evidence through this link
    used_bytes: int = big(default=0)  # bytes committed as evidence through this link
    reserved_bytes: int = big(default=0)  # declared lengths of open uploads
    note: str = Field(default="", max_length=300)


class Submission(SQLModel, table=True):
    """One citizen's batch through one link: their statement and declaration."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    reference: str = Field(max_length=32, unique=True, index=True)  # receipt code shown to the citizen
    link_id: str = Field(foreign_key="upload_link.id", index=True, max_length=32)
    report_id: str = Field(foreign_key="report.id", index=True, max_length=32)
    description: str = Field(default="", max_length=5000)
    occurred_at: str = Field(default="", max_length=200)
    location: str = Field(default="", max_length=500)
    contact_name: str = Field(default="", max_length=200)
    contact_details: str = Field(default="", max_length=300)
    declaration_version: str | None = Field(default=None, max_length=32)
    declaration_accepted_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    created_at: dt.datetime = created()


class Upload(SQLModel, table=True):
    """One resumable transfer (tus or multipart). Not evidence until complete."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    link_id: str = Field(foreign_key="upload_link.id", index=True, max_length=32)
    submission_id: str | None = Field(default=None, foreign_key="submission.id", index=True, max_length=32)
    blob_key: str = Field(max_length=200, unique=True)
    length: int | None = big(default=None, nullable=True)
    offset: int = big(default=0)
    state: str = Field(default=UploadState.OPEN, max_length=16, index=True)
    filename: str = Field(default="", max_length=255)  # untrusted display data
    filetype: str = Field(default="", max_length=100)  # untrusted display data
    detected_type: str | None = Field(default=None, max_length=100)
    sha256: str | None = Field(default=None, max_length=64)
    client_sha256: str | None = Field(default=None, max_length=64)
    expires_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True, index=True)
    created_at: dt.datetime = created()
    completed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class EvidenceItem(SQLModel, table=True):
    __tablename__ = "evidence_item"
    # The reviewer's evidence grid (keyset over received_at, id within a report) and the
    # per-report "new evidence waiting" counts (migration 0004).
    __table_args__ = (
        sa.Index("ix_item_report_received_id", "report_id", "received_at", "id"),
        sa.Index("ix_item_report_triage", "report_id", "triage"),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    report_id: str = Field(foreign_key="report.id", index=True, max_length=32)
    submission_id: str | None = Field(default=None, foreign_key="submission.id", index=True, max_length=32)
    # Unique: one completed upload makes exactly one item, however many times the
    # completion races (SECURITY_CHECKLIST UP-17).
    upload_id: str | None = Field(default=None, foreign_key="upload.id", unique=True, max_length=32)
    blob_key: str = Field(max_length=200)
    size: int = big(default=0)
    sha256: str = Field(max_length=64, index=True)
    verified_sha256: str | None = Field(default=None, max_length=64)
    original_filename: str = Field(default="", max_length=255)
    claimed_type: str = Field(default="", max_length=100)
    detected_type: str | None = Field(default=None, max_length=100)
    state: str = Field(default="received", max_length=16, index=True)
    state_reason: str | None = Field(default=None, max_length=1000)
    verdict: str | None = Field(default=None, max_length=16)
    verdict_signature: str | None = Field(default=None, max_length=200)
    signature_db_version: str | None = Field(default=None, max_length=200)
    media_metadata: dict[str, Any] | None = json_col()
    progress: int = Field(default=0)  # 0..100, for the reviewer's progress bar
    client_sha256: str | None = Field(default=None, max_length=64)
    client_hash_match: bool | None = None
    triage: str = Field(default=Triage.PENDING, max_length=16, index=True)
    triage_reason: str | None = Field(default=None, max_length=1000)
    received_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)
    updated_at: dt.datetime = created()


class Derivative(SQLModel, table=True):
    """Something we made from an original (thumbnail, preview, poster, proxy), with what
    a third party needs to reproduce it (ACPO principle 3)."""

    __table_args__ = (sa.UniqueConstraint("item_id", "kind", name="uq_derivative_item_kind"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    item_id: str = Field(foreign_key="evidence_item.id", index=True, max_length=32)
    kind: str = Field(max_length=16)
    blob_key: str = Field(max_length=200)
    mime_type: str = Field(max_length=100)
    size: int = big(default=0)
    sha256: str = Field(max_length=64)
    input_sha256: str = Field(max_length=64)
    tool: str = Field(max_length=100)
    tool_version: str = Field(max_length=200)
    argv: list[str] | None = json_col()
    width: int | None = None
    height: int | None = None
    created_at: dt.datetime = created()


class Job(SQLModel, table=True):
    """A unit of background work: the transactional outbox between ingest and the worker."""

    # The claim query filters on state and orders by run_after: without this index every
    # claim scans all finished jobs (measured: 109 ms vs 28 ms per claim at 200k jobs on
    # SQLite, where the scan also holds the write lock).
    __table_args__ = (sa.Index("ix_job_claim", "state", "run_after", "id"),)

    id: int | None = Field(default=None, sa_type=BigIntPK, primary_key=True)
    kind: str = Field(max_length=32, index=True)
    # Which workers take it (``queue.LANES``): long video has its own lane, so a slow
    # transcode never holds the slots photos are processed in (BF-19).
    lane: str = Field(default="default", max_length=16, sa_column_kwargs={"server_default": "default"})
    item_id: str | None = Field(default=None, foreign_key="evidence_item.id", index=True, max_length=32)
    payload: dict[str, Any] | None = json_col()
    # Optional idempotency key: enqueueing the same key twice yields one job.
    dedup_key: str | None = Field(default=None, max_length=200, unique=True)
    state: str = Field(default=JobState.QUEUED, max_length=16)
    attempts: int = Field(default=0)
    max_attempts: int = Field(default=5)
    run_after: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    lease_owner: str | None = Field(default=None, max_length=100)
    lease_expires_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    last_error: str | None = Field(default=None, max_length=2000)
    progress: int = Field(default=0)
    created_at: dt.datetime = created()
    updated_at: dt.datetime = created()


class Share(SQLModel, table=True):
    """A grant of one item or a whole report to a partner organisation (or one user)."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    report_id: str = Field(foreign_key="report.id", index=True, max_length=32)
    item_id: str | None = Field(default=None, foreign_key="evidence_item.id", index=True, max_length=32)
    partner_org_id: str | None = Field(default=None, foreign_key="organisation.id", index=True, max_length=32)
    partner_user_id: str | None = Field(default=None, foreign_key="user.id", index=True, max_length=32)
    allow_download: bool = False
    # What of the citizen's submission a partner sees beyond the evidence and the
    # statement (reviewer_ui/partner.py): contact details, and the precise location
    # (the place typed, GPS in the metadata). Off unless the sharer ticks them (0007).
    grant_contact: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    grant_location: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    created_by: str = Field(max_length=32)
    created_at: dt.datetime = created()
    expires_at: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    revoked_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    revoked_by: str | None = Field(default=None, max_length=32)


class Note(SQLModel, table=True):
    """Append-only notes: an edit is a new row that supersedes the old one."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    report_id: str = Field(foreign_key="report.id", index=True, max_length=32)
    item_id: str | None = Field(default=None, foreign_key="evidence_item.id", index=True, max_length=32)
    author_id: str = Field(foreign_key="user.id", max_length=32)
    body: str = Field(max_length=10000)
    supersedes_id: str | None = Field(default=None, max_length=32)
    created_at: dt.datetime = created()


class ItemTag(SQLModel, table=True):
    __tablename__ = "item_tag"
    item_id: str = Field(foreign_key="evidence_item.id", primary_key=True, max_length=32)
    tag: str = Field(primary_key=True, max_length=64, index=True)
    created_by: str | None = Field(default=None, max_length=32)
    created_at: dt.datetime = created()


class CustodyEvent(SQLModel, table=True):
    """One link of the hash-chained custody ledger. Append-only: on PostgreSQL a trigger
    refuses UPDATE and DELETE; on both, ``storage.ledger.verify`` finds any change."""

    __tablename__ = "custody_event"
    # The audit desk pages newest first by seq under each filter (storage/audit_search.py,
    # migration 0013_auditdesk): an index per filter, ending in seq.
    __table_args__ = (
        sa.Index("ix_custody_event_actor_seq", "actor", "seq"),
        sa.Index("ix_custody_event_action_seq", "action", "seq"),
        sa.Index("ix_custody_event_report_seq", "report_id", "seq"),
        sa.Index("ix_custody_event_item_seq", "item_id", "seq"),
        sa.Index("ix_custody_event_at", "at"),
    )
    seq: int = Field(sa_type=sa.BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=64)
    subject: str = Field(default="", max_length=100)
    report_id: str | None = Field(default=None, max_length=32)
    item_id: str | None = Field(default=None, max_length=32)
    detail: dict[str, Any] | None = json_col()
    request_id: str | None = Field(default=None, max_length=64)
    # Unique: two appenders that read the same head cannot both commit (no fork).
    prev_hash: str = Field(max_length=64, unique=True)
    hash: str = Field(max_length=64, unique=True)


class Checkpoint(SQLModel, table=True):
    id: int | None = Field(default=None, sa_type=BigIntPK, primary_key=True)
    seq: int = big()
    hash: str = Field(max_length=64)
    count: int = big()
    at: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    public_key: str = Field(max_length=100)
    signature: str = Field(max_length=200)


class ThrottleCounter(SQLModel, table=True):
    """A failure counter of a throttle (sign-in, link guessing), shared by every process
    and node. ``key`` is a keyed hash of what is counted (an account + client, a client),
    never the typed text: a password typed into the e-mail field must not be stored."""

    __tablename__ = "throttle_counter"
    key: str = Field(primary_key=True, max_length=64)
    failures: int = 0
    window_start: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    last_failure: dt.datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)


class TotpGuard(SQLModel, table=True):
    """Wrong TOTP codes per account in a window; ``locked_at`` set: codes are refused until
    the window ends or an admin allows them again."""

    __tablename__ = "totp_guard"
    user_id: str = Field(foreign_key="user.id", primary_key=True, max_length=32)
    failures: int = 0
    window_start: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    locked_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class LedgerStatus(SQLModel, table=True):
    """The outcome of the last periodic ledger verification (``storage.ledger_watch``):
    one row per verifier (``name``). The admin page and /readyz read it, so a chain that
    stopped verifying is loud everywhere, whichever process found it (AU-05, AU-10)."""

    __tablename__ = "ledger_status"

    name: str = Field(primary_key=True, max_length=64)
    ok: bool
    checked_at: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    head_seq: int = big()
    first_bad_seq: int | None = big(default=None, nullable=True)
    reason: str | None = Field(default=None, max_length=500)
    checkpoint_seq: int | None = big(default=None, nullable=True)
    destination: str = Field(default="", max_length=500)


class FixityCheck(SQLModel, table=True):
    """One re-hash of an original at rest (``storage.fixity``): when, what was read, and
    what it proved. ``result``: ok, mismatch, missing (an alarm each), error (the store
    could not be read: nothing proved, no alarm)."""

    __tablename__ = "fixity_check"
    # "Oldest-checked first" reads the newest check per item through this index.
    __table_args__ = (sa.Index("ix_fixity_item_at", "item_id", "checked_at"),)
    id: int | None = Field(default=None, sa_type=BigIntPK, primary_key=True)
    item_id: str = Field(foreign_key="evidence_item.id", max_length=32)
    checked_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    result: str = Field(max_length=16, index=True)
    blob_key: str = Field(max_length=200)
    expected_sha256: str = Field(max_length=64)
    sha256: str | None = Field(default=None, max_length=64)  # what was read (None: nothing)
    size: int | None = big(default=None, nullable=True)
    seconds: float = 0.0
    error: str | None = Field(default=None, max_length=500)


# --- retention, legal hold, disposal (storage.retention; issue 14 items 1-3) -----------


class ReportRetention(SQLModel, table=True):
    """A retention date set on one report by a person, with their reason (the custody
    event ``report.retention_set`` records it too). Without a row, a report's date is
    its creation plus the period of its kind (``EXHIBIT_RETENTION_BY_KIND``)."""

    __tablename__ = "report_retention"
    report_id: str = Field(foreign_key="report.id", primary_key=True, max_length=32)
    retain_until: dt.datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    reason: str = Field(max_length=1000)
    set_by: str = Field(max_length=200)
    set_at: dt.datetime = created()


class LegalHold(SQLModel, table=True):
    """A legal hold on a whole report (``item_id`` None) or one item: while live
    (``released_at`` None) nothing it covers is disposed of."""

    __tablename__ = "legal_hold"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    report_id: str = Field(foreign_key="report.id", index=True, max_length=32)
    item_id: str | None = Field(default=None, foreign_key="evidence_item.id", index=True, max_length=32)
    reason: str = Field(max_length=1000)
    placed_by: str = Field(max_length=200)
    placed_at: dt.datetime = created()
    released_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True, index=True)
    released_by: str | None = Field(default=None, max_length=200)
    release_reason: str | None = Field(default=None, max_length=1000)


class Disposal(SQLModel, table=True):
    """One item's disposal: written (with the rule and every key to destroy) before the
    first byte is deleted, finished in the transaction that makes the item ``purged``.
    An unfinished row is a disposal a crash interrupted: the next run completes it."""

    __tablename__ = "disposal"
    item_id: str = Field(foreign_key="evidence_item.id", primary_key=True, max_length=32)
    rule: str = Field(max_length=200)
    retain_until: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    keys: list[str] | None = json_col()
    actor: str = Field(max_length=200)
    started_at: dt.datetime = created()
    finished_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True, index=True)


class ObjectLock(SQLModel, table=True):
    """What the S3 Object Lock of an item's original should be (``want_*``, written with
    the decision that changes it) and what was last applied (``applied_*``). A row whose
    two differ is applied by the next retention run, so a crash between the decision and
    the PutObjectRetention/PutObjectLegalHold call is repaired."""

    __tablename__ = "object_lock"
    item_id: str = Field(foreign_key="evidence_item.id", primary_key=True, max_length=32)
    want_until: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    want_hold: bool = False
    applied_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    applied_hold: bool | None = None
    updated_at: dt.datetime = created()
