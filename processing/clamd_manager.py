"""The managed clamd of the embedded default: writes clamd.conf, chooses a signature
database, starts clamd in the foreground and restarts it if it dies.

Database choice: ``settings.clamd_database_dir`` if set; else ``/var/lib/clamav`` when it
holds signatures; else the project's own *test* signatures, written under the data
directory: EICAR anywhere in a file (``.ndb``) and the SHA-256 of Debian
``clamav-testfiles``' ``clam.exe`` (``.hsb``). Those catch test files and nothing else,
so that case is logged as a warning at start-up and shown in ``status()`` (for
/healthz), and the label is recorded with every verdict.

Security (SECURITY_CHECKLIST BF-02, BF-17): clamd listens on a unix socket in the data
directory only (mode 0600, never TCP on any interface); no VirusEvent; limits at
ClamAV's 2 GiB - 3 ceiling with ``AlertExceedsMax yes`` so that a file clamd could not
fully inspect comes back as a ``Heuristics.Limits.Exceeded`` alert (unscannable), not OK.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from processing.scanning import CLAMD_MAX_BYTES, ClamdScanner
from storage.settings import Settings

log = logging.getLogger(__name__)

SYSTEM_DATABASE_DIR = Path("/var/lib/clamav")
CLAM_EXE = Path("/usr/share/clamav-testfiles/clam.exe")
# sha256:size of Debian clamav-testfiles' clam.exe (1.4.x), used when the file is absent.
CLAM_EXE_SHA256 = "71e7b604d18aefd839e51a39c88df8383bb4c071dc31f87f00a2b5df580d4495"
CLAM_EXE_SIZE = 544
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
TEST_DATABASE_LABEL = "exhibit test signatures: EICAR and clam.exe only"
SIGNATURE_SUFFIXES = (".cvd", ".cld", ".cud", ".ndb", ".hdb", ".hsb", ".ldb", ".cdb", ".mdb", ".msb")
START_TIMEOUT_SECONDS = 180.0  # a production database takes tens of seconds to load


class ClamdStartError(Exception):
    code = "ERR_CLAMD_START"


def has_signatures(directory: Path) -> bool:
    try:
        return any(p.suffix in SIGNATURE_SUFFIXES for p in directory.iterdir())
    except OSError:
        return False


def write_test_database(directory: Path) -> None:
    """The project's own test signatures (STACK_NOTES.md: names come back with
    ``.UNOFFICIAL`` appended)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "exhibit-test.ndb").write_text(f"Exhibit.Test.EICAR:0:*:{EICAR.hex()}\n")
    if CLAM_EXE.is_file():
        data = CLAM_EXE.read_bytes()
        sha, size = hashlib.sha256(data).hexdigest(), len(data)
    else:
        sha, size = CLAM_EXE_SHA256, CLAM_EXE_SIZE
    (directory / "exhibit-test.hsb").write_text(f"{sha}:{size}:Exhibit.Test.ClamExe\n")


def clamd_conf(*, socket_path: Path, database_dir: Path, temp_dir: Path, max_bytes: int = CLAMD_MAX_BYTES) -> str:
    lines = {
        "Foreground": "yes",
        "LocalSocket": str(socket_path),
        "LocalSocketMode": "600",
        "FixStaleSocket": "yes",
        "DatabaseDirectory": str(database_dir),
        "TemporaryDirectory": str(temp_dir),
        "LogTime": "yes",
        "LogVerbose": "no",
        # Limits at ClamAV's ceiling; the worker refuses to call anything larger clean.
        "StreamMaxLength": str(max_bytes),
        "MaxFileSize": str(max_bytes),
        "MaxScanSize": str(max_bytes),
        "MaxScanTime": "300000",
        "MaxRecursion": "17",
        "MaxFiles": "10000",
        "AlertExceedsMax": "yes",
        "AlertEncrypted": "yes",
        "MaxThreads": "4",
        "ReadTimeout": "120",
        "CommandReadTimeout": "30",
        "ConcurrentDatabaseReload": "no",
    }
    return "".join(f"{k} {v}\n" for k, v in lines.items())


class ClamdManager:
    """Start, supervise and stop one clamd. ``start()`` blocks until clamd answers PING."""

    def __init__(self, settings: Settings, *, state_dir: Path | None = None, max_bytes: int = CLAMD_MAX_BYTES) -> None:
        self.settings = settings
        self.max_bytes = min(max_bytes, CLAMD_MAX_BYTES)
        self.state_dir = (state_dir or settings.data_dir / "clamd").resolve()
        self.socket_path = self.state_dir / "clamd.sock"
        self.address = f"unix://{self.socket_path}"
        self._process: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._lock = threading.Lock()
        self.restarts = 0
        self.adopted = False  # another process's managed clamd was already serving this socket
        self.database_dir, self.test_database = self._choose_database()

    def _choose_database(self) -> tuple[Path, bool]:
        if self.settings.clamd_database_dir is not None:
            return self.settings.clamd_database_dir.resolve(), False
        if has_signatures(SYSTEM_DATABASE_DIR):
            return SYSTEM_DATABASE_DIR, False
        return self.state_dir / "test-db", True

    @property
    def database_label(self) -> str:
        return TEST_DATABASE_LABEL if self.test_database else ""

    def scanner(self) -> ClamdScanner:
        return ClamdScanner(self.address, database_label=self.database_label)

    def status(self) -> dict[str, Any]:
        """For /healthz: is clamd up, and with which signatures."""
        process = self._process
        running = self.adopted or (process is not None and process.poll() is None)
        return {
            "scanner": "clamd",
            "address": self.address,
            "running": running,
            "responding": running and self.scanner().ping(),
            "database_dir": str(self.database_dir),
            "test_signatures_only": self.test_database,
            "warning": (
                "clamd is running with the project's TEST signatures only (EICAR, clam.exe): "
                "it detects no real malware. Install a signature database in /var/lib/clamav "
                "or set EXHIBIT_CLAMD_DATABASE_DIR."
            ) if self.test_database else None,
            "restarts": self.restarts,
        }

    def _write_config(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp_dir = self.state_dir / "tmp"
        temp_dir.mkdir(exist_ok=True, mode=0o700)
        if self.test_database:
            write_test_database(self.database_dir)
        conf = self.state_dir / "clamd.conf"
        conf.write_text(
            clamd_conf(socket_path=self.socket_path, database_dir=self.database_dir, temp_dir=temp_dir,
                       max_bytes=self.max_bytes)
        )
        return conf

    def _spawn(self, conf: Path) -> subprocess.Popen[bytes]:
        binary = shutil.which("clamd") or "/usr/sbin/clamd"
        if not os.path.exists(binary):
            raise ClamdStartError("clamd is not installed (apt-get install clamav-daemon)")
        log_file = open(self.state_dir / "clamd.log", "ab")
        try:
            return subprocess.Popen(  # noqa: S603 - fixed argv, our own config file
                [binary, "--foreground", f"--config-file={conf}"],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log_file.close()

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        scanner = self.scanner()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        # Polling: clamd offers no readiness signal but answering PING on its socket.
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ClamdStartError(
                    f"clamd exited with {process.returncode}; see {self.state_dir / 'clamd.log'}"
                )
            if self.socket_path.exists() and scanner.ping():
                return
            self._stop.wait(0.02)
        process.kill()
        raise ClamdStartError(f"clamd did not answer within {START_TIMEOUT_SECONDS:.0f} s")

    def start(self, *, supervise: bool = True) -> None:
        """Start clamd, or adopt the one already answering on our socket (``exhibit
        worker`` next to ``exhibit serve`` on the same data directory): two clamds
        cannot share a socket, and one is enough."""
        if self.socket_path.exists() and self.scanner().ping():
            self.adopted = True
            log.info("clamd.adopted", extra={"address": self.address, "test_signatures_only": self.test_database})
            if self.test_database:
                log.warning("clamd.test_signatures", extra={"warning": self.status()["warning"]})
            return
        conf = self._write_config()
        if self.test_database:
            log.warning(
                "clamd.test_signatures",
                extra={"database_dir": str(self.database_dir), "warning": self.status()["warning"]},
            )
        with self._lock:
            self._process = self._spawn(conf)
        self._wait_ready(self._process)
        log.info("clamd.started", extra={"address": self.address, "test_signatures_only": self.test_database})
        if supervise:
            self._supervisor = threading.Thread(target=self._supervise, args=(conf,), name="clamd-supervisor", daemon=True)
            self._supervisor.start()

    def _supervise(self, conf: Path) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            process = self._process
            if process is None:
                return
            # Wake up when clamd exits (or every few seconds to notice stop).
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                continue
            if self._stop.is_set():
                return
            log.error("clamd.exited", extra={"returncode": process.returncode, "restart_in": backoff})
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, 60.0)
            try:
                with self._lock:
                    self._process = self._spawn(conf)
                self._wait_ready(self._process)
                self.restarts += 1
                backoff = 1.0
                log.info("clamd.restarted", extra={"restarts": self.restarts})
            except ClamdStartError as exc:
                log.error("clamd.restart_failed", extra={"error": str(exc)})

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)


