"""Who may push: a source-address allowlist, and a brake on repeated wrong tokens.

The token is NXCC's only proof, so guessing it must be slow: an address that presented
``limit`` wrong tokens within ``window`` seconds gets 429 with ``Retry-After`` for its next
wrong ones. A valid token is never braked, so a real sender behind the same NAT as an
attacker keeps delivering. ``X-Forwarded-For`` is believed only from configured proxies.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAX_TRACKED = 10_000  # addresses remembered at once; the oldest are forgotten first


def networks(cidrs: Iterable[str]) -> list[Network]:
    """Parse CIDRs (``10.0.0.0/8``, ``2001:db8::/32``, or a single address)."""
    return [ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip()]


def client_address(scope: dict[str, Any], trusted_proxies: list[Network]) -> str:
    """Who connected: the peer, or, when the peer is a trusted proxy, what it says in
    ``X-Forwarded-For`` (the dashboard's sign-in brake counts by this address too)."""
    peer = scope.get("client")
    address = peer[0] if peer else ""
    if not trusted_proxies or not _within(address, trusted_proxies):
        return address
    forwarded = b""
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            forwarded = value
    # The right-most address that is not one of our proxies is the one that connected.
    for hop in reversed(forwarded.decode("latin-1").split(",")):
        hop = hop.strip()
        if hop and not _within(hop, trusted_proxies):
            return hop
    return address


def _within(address: str, nets: list[Network]) -> bool:
    try:
        ip: Address = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in nets)


class Guard:
    """Source checks for the push endpoint; state is per process."""

    def __init__(
        self,
        allowed: list[Network],
        trusted_proxies: list[Network],
        *,
        limit: int = 20,
        window: float = 60.0,
    ) -> None:
        self._allowed = allowed
        self._proxies = trusted_proxies
        self._limit = limit
        self._window = window
        self._failures: dict[str, tuple[float, int]] = {}  # address -> (window start, count)

    def client(self, scope: dict[str, Any]) -> str:
        """The sender's address: the peer, or what trusted proxies say in X-Forwarded-For."""
        return client_address(scope, self._proxies)

    def allowed(self, address: str) -> bool:
        """Whether the allowlist (if any) admits ``address``."""
        return not self._allowed or _within(address, self._allowed)

    def retry_after(self, address: str) -> int | None:
        """Seconds this address must wait before its next wrong token, or None if not braked."""
        entry = self._failures.get(address)
        if entry is None:
            return None
        started, count = entry
        remaining = started + self._window - time.monotonic()
        if remaining <= 0:
            del self._failures[address]
            return None
        return int(remaining) + 1 if count >= self._limit else None

    def failed(self, address: str) -> None:
        """Count one wrong or missing token from ``address``."""
        now = time.monotonic()
        started, count = self._failures.get(address, (now, 0))
        if now - started > self._window:
            started, count = now, 0
        self._failures[address] = (started, count + 1)
        if len(self._failures) > _MAX_TRACKED:
            oldest = min(self._failures, key=lambda a: self._failures[a][0])
            del self._failures[oldest]
