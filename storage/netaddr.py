"""The client's address, for both apps: the TCP peer, or what a trusted proxy says.

Threat (SECURITY_CHECKLIST AC-15): a client that sends ``X-Forwarded-For: 1.2.3.4`` or
``Forwarded: for=1.2.3.4`` straight to us would pick its own throttling bucket and poison
the address in the custody ledger. So the headers are believed only when the TCP peer is
one of ``EXHIBIT_TRUSTED_PROXIES`` (addresses or CIDR ranges), and then only as far as
the proxies go: the chain is read from the right (the hop nearest to us) and the first
address that is not itself a trusted proxy is the client. Everything to its left was
written by the client and is ignored. Without trusted proxies (the default) the headers
are never read.

``TrustedProxies`` is the ASGI middleware both apps put outermost: it replaces
``scope["client"]`` with the resolved address (the peer stays in
``scope["exhibit.peer"]``), so everything downstream (throttles, sessions, the ledger,
uvicorn's access log) sees one answer. uvicorn's own ``proxy_headers`` stays off.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

MAX_HOPS = 32  # a longer chain is read no further (a header stuffed to cost us work)


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``["10.0.0.0/8", "192.0.2.1", "::1"]`` -> networks. Raises ValueError on a bad one."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def parse_address(text: str) -> Address | None:
    """An address from an X-Forwarded-For element or a Forwarded ``for=`` node:
    ``1.2.3.4``, ``1.2.3.4:80``, ``"[2001:db8::1]:4711"``, ``2001:db8::1``. None when it is
    not one (``unknown``, an obfuscated ``_name``, garbage)."""
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forwarded_for(values: Sequence[str]) -> list[str]:
    """The ``for=`` nodes of Forwarded header lines (RFC 7239), in order; an element
    without ``for=`` gives "" (an unknown hop)."""
    hops: list[str] = []
    for line in values:
        for element in line.split(","):
            node = ""
            for pair in element.split(";"):
                name, _, value = pair.partition("=")
                if name.strip().lower() == "for":
                    node = value
            hops.append(node)
    return hops


def _x_forwarded_for(values: Sequence[str]) -> list[str]:
    return [part for line in values for part in line.split(",")]


def _is_trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def client_address(peer: str | None, headers: Iterable[tuple[bytes, bytes]], trusted: Sequence[Network]) -> str:
    """The client's address (see the module docstring). ``peer`` is the TCP peer's host."""
    if not peer:
        return "unknown"
    peer_address = parse_address(peer)
    if not trusted or peer_address is None or not _is_trusted(peer_address, trusted):
        return peer
    forwarded: list[str] = []
    xff: list[str] = []
    for name, value in headers:
        if name == b"forwarded":
            forwarded.append(value.decode("latin-1"))
        elif name == b"x-forwarded-for":
            xff.append(value.decode("latin-1"))
    # The standard header wins when a proxy sends it; otherwise the de facto one.
    hops = _forwarded_for(forwarded) if forwarded else _x_forwarded_for(xff)
    current = peer_address
    for raw in list(reversed(hops))[:MAX_HOPS]:
        address = parse_address(raw)
        if address is None:
            # A hop our proxy could not name: we cannot see past it, so the last
            # address we can vouch for (a trusted proxy) is the client.
            return str(current)
        current = address
        if not _is_trusted(address, trusted):
            return str(address)
    return str(current)


class TrustedProxies:
    """Pure ASGI middleware: ``scope["client"]`` becomes the resolved client address."""

    def __init__(self, app: ASGIApp, trusted: Sequence[Network]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and self.trusted:
            peer = scope.get("client")
            host = str(peer[0]) if peer else None
            resolved = client_address(host, scope.get("headers", []), self.trusted)
            scope["exhibit.peer"] = peer
            if resolved != host:
                scope["client"] = (resolved, 0)
        await self.app(scope, receive, send)
