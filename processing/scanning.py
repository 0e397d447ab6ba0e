"""Virus scanning: the ``Scanner`` contract and ``ClamdScanner``, a small clamd INSTREAM
client of our own (the only module that talks to clamd).

Why not the ``clamd`` package: its INSTREAM sends 1 KiB chunks with ``send()`` (22 MB/s
over TCP, 126 MB/s over a unix socket, STACK_NOTES.md). This client sends 1 MiB chunks
with ``sendall`` and reaches about 200 MB/s.

A verdict is a result, not an exception: ``clean``, ``infected(signature)`` or
``unscannable(reason)``. "No verdict could be reached" (clamd down, a timeout, an ERROR
reply, a broken connection) raises ``ScannerUnavailable`` / ``ScanError``: the caller
retries later and the item never passes (SECURITY_CHECKLIST BF-04, CF-11). No code path
here turns an error or an empty reply into ``clean``.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CHUNK_BYTES = 1 << 20
# clamd cannot scan more than 2 GiB - 3 bytes (MaxFileSize is capped at 2147483645):
# anything larger is unscannable by design and must never be reported clean (BF-02).
CLAMD_MAX_BYTES = 2147483645
REPLY_MAX_BYTES = 64 * 1024


class VerdictKind(enum.StrEnum):
    CLEAN = "clean"
    INFECTED = "infected"
    UNSCANNABLE = "unscannable"


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    signature: str | None = None  # the signature name when infected
    reason: str | None = None  # why, when unscannable
    database_version: str = ""  # what the scanner said it was running
    raw_reply: str = ""
    method: str = "INSTREAM"  # how clamd got the bytes: INSTREAM or FILDES

    @property
    def is_clean(self) -> bool:
        return self.kind is VerdictKind.CLEAN


class ScanError(Exception):
    """No verdict could be reached for this stream (ERROR reply, broken stream, timeout).
    Retry later; never treat as clean."""

    code = "ERR_SCAN_FAILED"


class ScannerUnavailable(ScanError):
    """The scanner could not be reached at all (socket missing, connection refused)."""

    code = "ERR_SCANNER_UNAVAILABLE"


class Scanner(Protocol):
    """Scans a byte stream.

    ``scan(chunks, size)``: ``size`` is the total the caller will send (known from the
    blob store); a stream larger than the scanner can see is ``unscannable`` without
    sending it. Returns a ``Verdict``; raises ``ScannerUnavailable`` when the scanner
    cannot be reached and ``ScanError`` when it was reached but gave no verdict.
    ``version()`` names the engine and signature database (recorded with each verdict).
    """

    def scan(self, chunks: Iterable[bytes], size: int) -> Verdict: ...

    def scan_file(self, path: Path, size: int) -> Verdict:
        """Scan a local file the caller has verified (same errors as ``scan``). A local
        clamd is handed the open file descriptor (no copy through a socket); a remote
        one gets the bytes streamed."""
        ...

    def version(self) -> str: ...

    def ping(self) -> bool: ...


_FOUND = re.compile(r"^(?:stream|\S+): (?P<name>.+) FOUND$")


def parse_reply(reply: str, database_version: str = "") -> Verdict:
    """Map one clamd INSTREAM reply to a verdict. Raises ``ScanError`` for anything that
    is not a verdict."""
    text = reply.strip().rstrip("\0").strip()
    if text == "OK" or (text.endswith(": OK") and ":" not in text[:-4]):
        return Verdict(VerdictKind.CLEAN, database_version=database_version, raw_reply=text)
    if "INSTREAM size limit exceeded" in text:
        # clamd stopped reading: it did not see the whole file (BF-02).
        return Verdict(
            VerdictKind.UNSCANNABLE, reason="stream exceeds clamd StreamMaxLength",
            database_version=database_version, raw_reply=text,
        )
    match = _FOUND.match(text)
    if match:
        name = match.group("name")[:200]
        if name.startswith(("Heuristics.Limits.Exceeded", "Heuristics.Encrypted")):
            # AlertExceedsMax / AlertEncrypted: clamd could not look at everything.
            # That is "we do not know", never clean, and not proof of malware either.
            return Verdict(
                VerdictKind.UNSCANNABLE, reason=f"scanner limit: {name}",
                database_version=database_version, raw_reply=text,
            )
        return Verdict(VerdictKind.INFECTED, signature=name, database_version=database_version, raw_reply=text)
    raise ScanError(f"clamd gave no verdict: {text[:200]!r}")


class ClamdScanner:
    """clamd over a unix socket (``unix:///path``) or TCP (``tcp://127.0.0.1:3310``).

    ``database_label`` is appended to clamd's VERSION answer, so that a verdict from the
    project's own test signatures can never be mistaken for one from a real database.
    """

    def __init__(self, address: str, *, timeout_seconds: float = 300.0, database_label: str = "") -> None:
        self.address = address
        self.timeout_seconds = timeout_seconds
        self.database_label = database_label
        if not address.startswith(("unix://", "tcp://")):
            raise ValueError("clamd address must be unix:///path or tcp://host:port")

    def _connect(self) -> socket.socket:
        try:
            if self.address.startswith("unix://"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(self.timeout_seconds)
                    sock.connect(self.address.removeprefix("unix://"))
                except OSError:
                    sock.close()
                    raise
            else:
                host, _, port = self.address.removeprefix("tcp://").rpartition(":")
                sock = socket.create_connection((host, int(port)), timeout=self.timeout_seconds)
        except OSError as exc:
            raise ScannerUnavailable(f"clamd unreachable at {self.address}: {exc.strerror or exc}") from None
        return sock

    def _command(self, command: bytes) -> str:
        with self._connect() as sock:
            try:
                sock.sendall(b"z" + command + b"\0")
                return _read_reply(sock)
            except OSError as exc:
                raise ScannerUnavailable(f"clamd {command.decode()} failed: {exc}") from None

    def ping(self) -> bool:
        try:
            return self._command(b"PING") == "PONG"
        except ScanError:
            return False

    def version(self) -> str:
        reply = self._command(b"VERSION")
        if not reply.startswith("ClamAV"):
            raise ScanError(f"unexpected VERSION reply: {reply[:100]!r}")
        return f"{reply} ({self.database_label})" if self.database_label else reply

    def scan(self, chunks: Iterable[bytes], size: int) -> Verdict:
        database_version = self.version()
        if size > CLAMD_MAX_BYTES:
            return Verdict(
                VerdictKind.UNSCANNABLE,
                reason=f"{size} bytes is over ClamAV's {CLAMD_MAX_BYTES}-byte limit",
                database_version=database_version,
            )
        sent = 0
        with self._connect() as sock:
            try:
                sock.sendall(b"zINSTREAM\0")
                for chunk in _rechunk(chunks):
                    sock.sendall(struct.pack("!L", len(chunk)))
                    sock.sendall(chunk)
                    sent += len(chunk)
                sock.sendall(struct.pack("!L", 0))
            except (BrokenPipeError, ConnectionResetError):
                # clamd closes the stream when it exceeds StreamMaxLength, after
                # writing its reply: read it if it is there.
                try:
                    reply = _read_reply(sock)
                except OSError:
                    reply = ""
                if "size limit exceeded" in reply:
                    return parse_reply(reply, database_version)
                raise ScanError(f"clamd closed the stream after {sent} bytes: {reply[:200]!r}") from None
            except TimeoutError:
                raise ScanError(f"clamd timed out after {sent} bytes") from None
            except OSError as exc:
                raise ScanError(f"clamd stream failed after {sent} bytes: {exc}") from None
            if sent != size:
                # The source gave fewer or more bytes than the blob store said: do not
                # trust a verdict on bytes that are not the item's bytes.
                raise ScanError(f"stream length {sent} differs from the object size {size}")
            try:
                reply = _read_reply(sock)
            except TimeoutError:
                raise ScanError("clamd timed out before answering") from None
            except OSError as exc:
                raise ScanError(f"clamd reply failed: {exc}") from None
        return parse_reply(reply, database_version)


    def scan_file(self, path: Path, size: int) -> Verdict:
        if not self.address.startswith("unix://"):
            with open(path, "rb") as f:
                return self.scan(iter(lambda: f.read(CHUNK_BYTES), b""), size)
        database_version = self.version()
        if size > CLAMD_MAX_BYTES:
            return Verdict(
                VerdictKind.UNSCANNABLE,
                reason=f"{size} bytes is over ClamAV's {CLAMD_MAX_BYTES}-byte limit",
                database_version=database_version,
            )
        with open(path, "rb") as f, self._connect() as sock:
            if os.fstat(f.fileno()).st_size != size:
                raise ScanError(f"file size differs from the object size {size}")
            try:
                # FILDES: clamd reads our open descriptor (SCM_RIGHTS) directly - no copy
                # through the socket and no temporary file on clamd's side. It works on
                # unix sockets only, so it cannot reach a remote clamd by mistake.
                sock.sendall(b"zFILDES\0")
                socket.send_fds(sock, [b"\0"], [f.fileno()])
                reply = _read_reply(sock)
            except TimeoutError:
                raise ScanError("clamd timed out before answering") from None
            except OSError as exc:
                raise ScanError(f"clamd FILDES failed: {exc}") from None
        return dataclasses.replace(parse_reply(reply, database_version), method="FILDES")


def _rechunk(chunks: Iterable[bytes]) -> Iterable[bytes]:
    """Pass through chunks of at most CHUNK_BYTES (clamd's chunk length is 32-bit, and
    one huge chunk would defeat StreamMaxLength's early stop)."""
    for chunk in chunks:
        view = memoryview(chunk)
        for start in range(0, len(view), CHUNK_BYTES):
            yield bytes(view[start : start + CHUNK_BYTES])


def _read_reply(sock: socket.socket) -> str:
    data = bytearray()
    while not data.endswith(b"\0") and len(data) < REPLY_MAX_BYTES:
        part = sock.recv(4096)
        if not part:
            break
        data += part
    if not data:
        raise ScanError("clamd closed the connection without a reply")
    return data.rstrip(b"\0").decode("utf-8", "replace").strip()
