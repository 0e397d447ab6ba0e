"""Background services of the staff side of ``exhibit serve``: the supervised clamd, the
processing worker, a housekeeping thread (the worker's heartbeat and clamd's status) and
the periodic ledger verifier (``start_ledger_watch``). Expiring unfinished uploads is not
here: it is a task of the public app's lifespan (``upload_api.app.housekeeping``). Also
`exhibit worker`. The ``health`` dict they
keep is shown only by the staff door's /healthz: the public door says "ok" and nothing
about the scanner (issue 11 item 5)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import TYPE_CHECKING, Any

from processing.clamd_manager import ClamdManager
from processing.scanning import ClamdScanner
from processing.worker import run_worker, start_worker_thread
from storage.settings import Settings

if TYPE_CHECKING:
    from storage.ledger_watch import LedgerWatch

log = logging.getLogger("exhibit.services")

HOUSEKEEPING_SECONDS = 60.0


def scanner_status(status: dict[str, Any], scanner: ClamdScanner) -> dict[str, Any]:
    """The staff health page's scanner entry: up or not, which signatures (a loud warning
    when only test signatures are loaded), restarts. Staff door only: it tells an attacker
    which samples would pass. No socket paths (VL-09)."""
    shown: dict[str, Any] = {k: status[k] for k in ("scanner", "running", "responding", "test_signatures_only", "warning", "restarts")
             if k in status}
    if shown.get("responding"):
        try:
            shown["signatures"] = scanner.version()
        except Exception:  # health must answer even when clamd does not
            shown["signatures"] = None
    return shown


def _start_scanner(settings: Settings, stop: threading.Event, health: dict[str, Any]) -> tuple[ClamdScanner, ClamdManager | None]:
    if settings.clamd_address:
        scanner = ClamdScanner(settings.clamd_address)
        health["scanner"] = scanner_status({"scanner": "clamd", "responding": scanner.ping()}, scanner)
        return scanner, None
    manager = ClamdManager(settings)
    manager.start()
    status = manager.status()
    health["scanner"] = scanner_status(status, manager.scanner())
    if status.get("test_signatures_only"):
        # Loud on purpose: an operator must not mistake the test database for protection.
        banner = "!" * 78
        log.warning("%s\n%s\n%s", banner, status.get("warning"), banner)
    return manager.scanner(), manager


def start_background_services(
    settings: Settings,
    stop: threading.Event,
    health: dict[str, Any],
) -> list[threading.Thread]:
    """Start clamd (unless EXHIBIT_CLAMD_ADDRESS names one), the worker, and a thread that
    refreshes their health every HOUSEKEEPING_SECONDS."""
    scanner, manager = _start_scanner(settings, stop, health)
    worker = start_worker_thread(settings, stop_event=stop, scanner=scanner)

    def heartbeat() -> None:
        health["worker"] = {"alive": worker.is_alive(), "checked_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}

    heartbeat()

    def housekeeping() -> None:
        while not stop.wait(HOUSEKEEPING_SECONDS):
            heartbeat()
            if manager is not None:
                health["scanner"] = scanner_status(manager.status(), manager.scanner())
        if manager is not None:
            manager.stop()

    keeper = threading.Thread(target=housekeeping, name="exhibit-housekeeping", daemon=True)
    keeper.start()
    return [worker, keeper]


def start_ledger_watch(settings: Settings, health: dict[str, Any] | None = None) -> LedgerWatch:
    """The periodic ledger verifier as a running service (``storage.ledger_watch``): it
    verifies the chain from the last good checkpoint and writes a new signed one to
    EXHIBIT_CHECKPOINT_URL every EXHIBIT_CHECKPOINT_INTERVAL; a failure goes to the log,
    the ``ledger_status`` table and ``health["ledger"]``. Call ``.stop()`` to end it.

    Only for processes that may hold the signing key: `exhibit worker` and the staff
    side of `exhibit serve`. The public door calls ``storage.ledger.forbid_signing_key()``
    instead, so that a compromised internet-facing process cannot sign (AU-06)."""
    from storage.ledger_watch import LedgerWatch

    return LedgerWatch(settings, health=health).start()


def run_worker_process(
    settings: Settings, *, concurrency: int, stop: threading.Event, lanes: list[str] | None = None
) -> int:
    """`exhibit worker`: with EXHIBIT_CLAMD_ADDRESS it uses that clamd; without, it starts
    and supervises its own. It also runs the periodic ledger verifier."""
    health: dict[str, Any] = {}
    scanner, manager = _start_scanner(settings, stop, health)
    watch = start_ledger_watch(settings, health)
    try:
        run_worker(settings, concurrency=concurrency, stop_event=stop, scanner=scanner, lanes=lanes)
    finally:
        watch.stop()
        if manager is not None:
            manager.stop()
    return 0


