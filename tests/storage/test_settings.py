"""Settings from EXHIBIT_* variables: numbers that must be positive are refused otherwise."""

from __future__ import annotations

import pytest

from storage.settings import Settings


def test_defaults_parse() -> None:
    s = Settings.from_env({})
    assert s.job_lease_seconds == 60 and s.link_max_bytes == 20 << 30 and s.link_default_expiry_seconds == 7 * 86400


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXHIBIT_JOB_LEASE_SECONDS", "0"),  # a lease that lapses as it is granted
        ("EXHIBIT_JOB_MAX_ATTEMPTS", "-1"),
        ("EXHIBIT_WORKER_CONCURRENCY", "0"),
        ("EXHIBIT_LINK_MAX_BYTES", "0G"),
        ("EXHIBIT_LINK_DEFAULT_EXPIRY", "-7d"),
        ("EXHIBIT_PORT", "eighty"),
        ("EXHIBIT_MAX_FILE_BYTES", "lots"),
    ],
)
def test_a_value_that_cannot_be_meant_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})
