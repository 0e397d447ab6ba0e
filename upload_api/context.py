"""What every upload_api handler needs, built once by ``create_app`` and passed down."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from storage.blobs.protocol import BlobStore
from storage.db import Database
from storage.locks import Locker, make_locker
from storage.models import utcnow
from storage.settings import Settings

if TYPE_CHECKING:
    from upload_api.auth import LinkGuard
    from upload_api.streaming import InFlight

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


def make_templates() -> jinja2.Environment:
    # Autoescape everything: filenames and statements are the attacker's words (BF-15).
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


@dataclass
class UploadContext:
    settings: Settings
    db: Database
    store: BlobStore
    templates: jinja2.Environment
    secret: bytes  # HMAC key for upload-session cookies and status tokens; never logged
    clock: Callable[[], dt.datetime] = utcnow
    health: dict[str, Any] = field(default_factory=dict)
    # Per-process state, typed: what this process keeps of each unfinished upload it is
    # receiving (hash state, store handle: ``upload_api.streaming``), the progress
    # writes still in flight (``ingest.settle`` waits for them), the guessing counter.
    inflight: dict[str, InFlight] = field(default_factory=dict)
    progress_tasks: set[asyncio.Task[None]] = field(default_factory=set)
    link_guard: LinkGuard | None = None
    # One writer per upload (CF-03): the locker this database needs, chosen once here.
    locker: Locker = field(init=False)

    def __post_init__(self) -> None:
        self.locker = make_locker(self.db)
