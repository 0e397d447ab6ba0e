"""The clamd INSTREAM client against a real clamd (SECURITY_CHECKLIST BF-01, BF-02,
BF-04, BF-17)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from processing.clamd_manager import CLAM_EXE, EICAR, ClamdManager, clamd_conf
from processing.scanning import CLAMD_MAX_BYTES, ClamdScanner, ScanError, ScannerUnavailable, VerdictKind, parse_reply
from storage.settings import Settings


def test_clean_bytes_are_clean_with_the_database_version(scanner: ClamdScanner) -> None:
    verdict = scanner.scan([os.urandom(3 << 20)], 3 << 20)
    assert verdict.kind is VerdictKind.CLEAN
    assert verdict.database_version.startswith("ClamAV ") and "test signatures" in verdict.database_version


def test_eicar_anywhere_in_a_stream_is_infected_across_chunk_boundaries(scanner: ClamdScanner) -> None:
    data = os.urandom((1 << 20) - 20) + EICAR + os.urandom(1000)
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    verdict = scanner.scan(chunks, len(data))
    assert verdict.kind is VerdictKind.INFECTED
    assert verdict.signature == "Exhibit.Test.EICAR.UNOFFICIAL"


def test_debian_clam_exe_is_infected(scanner: ClamdScanner) -> None:
    data = CLAM_EXE.read_bytes()  # clamav-testfiles must be installed: no skip
    verdict = scanner.scan([data], len(data))
    assert verdict.kind is VerdictKind.INFECTED and verdict.signature == "Exhibit.Test.ClamExe.UNOFFICIAL"


def test_over_two_gib_is_unscannable_without_sending_a_byte(scanner: ClamdScanner) -> None:
    def never() -> Iterator[bytes]:
        raise AssertionError("must not be read")
        yield b""

    verdict = scanner.scan(never(), CLAMD_MAX_BYTES + 1)
    assert verdict.kind is VerdictKind.UNSCANNABLE and "limit" in (verdict.reason or "")


@pytest.fixture(scope="module")
def small_clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdManager]:
    root = tmp_path_factory.mktemp("small-clamd")
    manager = ClamdManager(Settings(data_dir=root, clamd_database_dir=root / "db"), max_bytes=1 << 20)
    manager.test_database = True
    manager.start(supervise=False)
    try:
        yield manager
    finally:
        manager.stop()


def test_stream_over_clamd_limits_with_eicar_at_the_end_is_never_clean(small_clamd: ClamdManager) -> None:
    # BF-02: with the default AlertExceedsMax no, clamd answers OK here.
    data = os.urandom(2 << 20) + EICAR
    verdict = small_clamd.scanner().scan([data], len(data))
    assert verdict.kind is VerdictKind.UNSCANNABLE, verdict


def test_clamd_down_raises_unavailable_never_a_verdict(tmp_path: Path) -> None:
    scanner = ClamdScanner(f"unix://{tmp_path / 'missing.sock'}")
    with pytest.raises(ScannerUnavailable):
        scanner.scan([b"x"], 1)
    assert scanner.ping() is False


def test_error_and_empty_replies_are_errors_not_verdicts() -> None:
    for reply in ("stream: Can't allocate memory ERROR", "", "UNKNOWN COMMAND", "stream: "):
        with pytest.raises(ScanError):
            parse_reply(reply)
    assert parse_reply("stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND").kind is VerdictKind.UNSCANNABLE
    assert parse_reply("stream: Heuristics.Encrypted.Zip FOUND").kind is VerdictKind.UNSCANNABLE
    assert parse_reply("INSTREAM size limit exceeded. ERROR").kind is VerdictKind.UNSCANNABLE


def test_generated_config_listens_on_a_private_unix_socket_with_alerts_on(tmp_path: Path) -> None:
    # BF-17 config gate: unix socket only, no TCP, no VirusEvent, limits at the ceiling.
    conf = clamd_conf(socket_path=tmp_path / "s", database_dir=tmp_path, temp_dir=tmp_path)
    lines = dict(line.split(" ", 1) for line in conf.splitlines())
    assert "TCPSocket" not in lines and "TCPAddr" not in lines and "VirusEvent" not in lines
    assert lines["LocalSocketMode"] == "600"
    assert lines["AlertExceedsMax"] == "yes" and lines["AlertEncrypted"] == "yes"
    assert int(lines["StreamMaxLength"]) == int(lines["MaxFileSize"]) == CLAMD_MAX_BYTES


def test_manager_reports_test_signatures_loudly(clamd: ClamdManager) -> None:
    status = clamd.status()
    assert status["running"] and status["responding"]
    assert status["test_signatures_only"] is True and "TEST signatures" in status["warning"]


def test_local_file_is_scanned_through_its_descriptor(scanner: ClamdScanner, tmp_path: Path) -> None:
    infected = tmp_path / "infected.bin"
    infected.write_bytes(os.urandom(4096) + EICAR)
    verdict = scanner.scan_file(infected, infected.stat().st_size)
    assert verdict.kind is VerdictKind.INFECTED and verdict.method == "FILDES"
    clean = tmp_path / "clean.bin"
    clean.write_bytes(os.urandom(1 << 20))
    assert scanner.scan_file(clean, 1 << 20).kind is VerdictKind.CLEAN


def test_local_file_over_clamd_limits_with_eicar_at_the_end_is_never_clean(
    small_clamd: ClamdManager, tmp_path: Path
) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(2 << 20) + EICAR)
    verdict = small_clamd.scanner().scan_file(path, path.stat().st_size)
    assert verdict.kind is VerdictKind.UNSCANNABLE and "Limits" in (verdict.reason or ""), verdict


def test_file_that_changed_size_gets_no_verdict(scanner: ClamdScanner, tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    with pytest.raises(ScanError):
        scanner.scan_file(path, 4)


def test_second_manager_on_the_same_data_dir_adopts_the_running_clamd(clamd: ClamdManager) -> None:
    other = ClamdManager(clamd.settings, state_dir=clamd.state_dir)
    other.test_database = True
    other.start(supervise=False)
    try:
        assert other.adopted and other.status()["responding"]
    finally:
        other.stop()  # must not stop the clamd it did not start
    assert clamd.scanner().ping()
