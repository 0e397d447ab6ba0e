"""The client address: forwarding headers believed only from trusted proxies (AC-15)."""

from __future__ import annotations

import pytest

from storage.netaddr import client_address, parse_networks
from storage.settings import Settings

PROXY = parse_networks(["10.0.0.0/8", "2001:db8:ffff::/48"])


def headers(**values: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in values.items()]


def test_an_untrusted_peer_cannot_choose_its_address() -> None:
    spoof = headers(x_forwarded_for="1.2.3.4", forwarded="for=1.2.3.4")
    assert client_address("203.0.113.7", spoof, PROXY) == "203.0.113.7"
    assert client_address("203.0.113.7", spoof, ()) == "203.0.113.7"


def test_the_right_most_untrusted_hop_is_the_client() -> None:
    # The client wrote "1.2.3.4" itself; our proxy appended the address it saw.
    h = headers(x_forwarded_for="1.2.3.4, 198.51.100.9")
    assert client_address("10.1.2.3", h, PROXY) == "198.51.100.9"
    # Two layers of our own proxies.
    h = headers(x_forwarded_for="1.2.3.4, 198.51.100.9, 10.9.9.9")
    assert client_address("10.1.2.3", h, PROXY) == "198.51.100.9"


def test_forwarded_header_rfc7239() -> None:
    h = headers(forwarded='for=1.2.3.4, for="[2001:db8::7]:4711";proto=https, for=10.0.0.5')
    assert client_address("10.1.2.3", h, PROXY) == "2001:db8::7"
    h = headers(forwarded="for=192.0.2.60:8080;by=10.0.0.1")
    assert client_address("10.1.2.3", h, PROXY) == "192.0.2.60"


def test_an_unnamed_hop_stops_at_the_last_trusted_proxy() -> None:
    h = headers(forwarded="for=1.2.3.4, for=unknown")
    assert client_address("10.1.2.3", h, PROXY) == "10.1.2.3"
    assert client_address("10.1.2.3", [], PROXY) == "10.1.2.3"


def test_ipv4_mapped_ipv6_peer_is_matched_as_ipv4() -> None:
    h = headers(x_forwarded_for="198.51.100.9")
    assert client_address("::ffff:10.1.2.3", h, PROXY) == "198.51.100.9"


def test_the_setting_refuses_a_typo() -> None:
    assert Settings.from_env({"EXHIBIT_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1"}).trusted_proxies == (
        "10.0.0.0/8", "192.0.2.1")
    with pytest.raises(ValueError, match="EXHIBIT_TRUSTED_PROXIES"):
        Settings.from_env({"EXHIBIT_TRUSTED_PROXIES": "10.0.0.0/8 localhost"})
