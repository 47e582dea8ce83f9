"""Who may push: a source-address allowlist, and a brake on repeated wrong tokens.

The token is NXCC's only proof, so guessing it must be slow: an address that presented
``limit`` wrong tokens within ``window`` seconds gets 429 with ``Retry-After`` for its next
wrong ones. A valid token is never braked, so a real sender behind the same NAT as an
attacker keeps delivering. ``X-Forwarded-For`` is believed only from configured proxies.
"""

from __future__ import annotations

import functools
import ipaddress
import re
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
    """The one answer to "who sent this request", for every brake, the allowlist, the
    quarantine's record and the logs: the peer, or, when the peer is a trusted proxy, the
    address that proxy saw (``X-Forwarded-For`` read right to left, trusted hops skipped).

    The server must hand us the real peer: ``cdrhub serve`` turns uvicorn's own proxy-header
    handling off (see :mod:`cdrhub.server`), because uvicorn believes ``X-Forwarded-For`` from
    loopback by default, and then any local client could choose its address.
    """
    peer = scope.get("client")
    address = _canonical(peer[0]) if peer else None
    if address is None:
        return peer[0] if peer else ""
    if not trusted_proxies or not _within(address, trusted_proxies):
        return address
    # Several header lines mean one comma-separated list, in order (RFC 9110, 5.3); a proxy
    # that adds its own line instead of appending to the client's is thus read right too.
    forwarded = b",".join(v for name, v in scope["headers"] if name == b"x-forwarded-for")
    # Each trusted hop appended the address it saw, so the right-most entry that is not one of
    # ours is the one that connected to our first proxy; what is left of it, anyone wrote.
    for hop in reversed(forwarded.decode("latin-1").split(",")):
        hop = hop.strip()
        if not hop:
            continue
        seen = _canonical(hop)
        if seen is None:
            # Not an address: no proxy of ours wrote it, so stop at the hop that passed it on.
            return address
        if not _within(seen, trusted_proxies):
            return seen
        address = seen
    return address


#: A hop as proxies write it: an address, ``[v6]``, ``[v6]:port`` or ``v4:port``.
_HOP = re.compile(r"\[(?P<v6>[^\]]+)\](?::\d{1,5})?|(?P<v4>[0-9.]+):\d{1,5}")


@functools.lru_cache(maxsize=4096)
def _canonical(text: str) -> str | None:
    """The address in its one spelling (``::FFFF:10.0.0.1`` is ``10.0.0.1``, ``2001:DB8::1``
    is ``2001:db8::1``), so no brake or allowlist can be passed by writing it another way;
    None when ``text`` is not an address.

    Cached: every push asks it of its peer, senders are few, and parsing an address with
    ``ipaddress`` was a quarter of the push path's own time (issue 15's profile).
    """
    match = _HOP.fullmatch(text)
    if match:
        text = match["v6"] or match["v4"]
    try:
        ip: Address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


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
