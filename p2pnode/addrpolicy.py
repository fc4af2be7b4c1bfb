"""Which addresses taken from capability ads a node dials, and how fast (spec 03 §5.4,
ADDR-1 to ADDR-7); pure: the caller passes ``now``.

An ad's ``addrs`` are whatever its signer chose to write. Dialled blindly, they turn every
node of the network into a port scanner of the signer's choosing — of the nodes' own
loopback and LAN as much as of anyone on the internet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

# ADDR-4: addresses of one ad that are considered, in order (an ad carries at most 8).
MAX_AD_ADDRS = 8
# ADDR-5: dials to addresses from ads, all peers together.
DIAL_RATE_PER_S = 1.0
DIAL_BURST = 4
DIAL_CONCURRENCY = 4

PRIVATE_ADDRS_SETTINGS = ("auto", "allow", "deny")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddrDrop(StrEnum):
    """Why an address from an ad is not dialled."""

    MALFORMED = "malformed"  # not /ip4|ip6/<address>/tcp/<port>, nothing more (ADDR-2)
    NOT_UNICAST = "not_unicast"  # unspecified, multicast, broadcast, reserved (ADDR-3)
    PRIVATE = "private"  # loopback, private, link-local, ... on a public network (ADDR-3)
    TOO_MANY = "too_many"  # past the first MAX_AD_ADDRS of an ad (ADDR-4)


def _ip_of(addr: str) -> IPAddress | None:
    """The IP of ``/ip4/<a>/tcp/<port>`` or ``/ip6/<a>/tcp/<port>``; None for anything else."""
    parts = addr.split("/")
    if len(parts) != 5 or parts[0] != "" or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp":
        return None
    port = parts[4]
    if not port.isascii() or not port.isdigit() or port != str(int(port)) or not (
            1 <= int(port) <= 65535):
        return None
    if "%" in parts[2]:  # an IPv6 zone names an interface of the signer, not ours
        return None
    try:
        ip = ipaddress.ip_address(parts[2])
    except ValueError:
        return None
    if ip.version != (4 if parts[1] == "ip4" else 6):
        return None
    return ip


def check_addr(addr: str, allow_private: bool) -> AddrDrop | None:
    """None if ``addr`` may be dialled (ADDR-2, ADDR-3), else why not."""
    ip = _ip_of(addr)
    if ip is None:
        return AddrDrop.MALFORMED
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # judged as the IPv4 address it reaches
    if ip.is_unspecified or ip.is_multicast or (ip.is_reserved and not ip.is_loopback):
        return AddrDrop.NOT_UNICAST  # (::1 lies in IPv6's reserved ::/8)
    if not allow_private and not ip.is_global:
        return AddrDrop.PRIVATE
    return None


@dataclass(frozen=True, slots=True)
class Filtered:
    dialable: list[str]
    dropped: list[AddrDrop]


def filter_ad_addrs(addrs: Iterable[str], allow_private: bool) -> Filtered:
    """The addresses of one ad that may be dialled, in the ad's order (ADDR-1 to ADDR-4)."""
    keep: list[str] = []
    dropped: list[AddrDrop] = []
    for i, addr in enumerate(addrs):
        why = AddrDrop.TOO_MANY if i >= MAX_AD_ADDRS else check_addr(addr, allow_private)
        if why is None:
            if addr not in keep:
                keep.append(addr)
        else:
            dropped.append(why)
    return Filtered(keep, dropped)


def learned_addr_check(allow_private: bool,
                       configured: Iterable[str]) -> Callable[[str], AddrDrop | None]:
    """ADDR-7: the check of an address learned from the network (identify, a DHT answer)
    before it is kept for dialling: ADDR-2 and ADDR-3, except for the addresses the
    operator configured (``configured``: bootstrap multiaddrs, with or without ``/p2p/``)."""
    exempt = frozenset(a.split("/p2p/")[0] for a in configured)

    def check(addr: str) -> AddrDrop | None:
        return None if addr in exempt else check_addr(addr, allow_private)

    return check


def private_addrs_allowed(setting: str, listen: Iterable[str], bootstrap: Iterable[str]) -> bool:
    """ADDR-6: whether this node dials private addresses from ads.

    ``allow`` and ``deny`` say so; ``auto`` allows them when the node itself is evidently on
    a private network: some listen or bootstrap address names a specific non-global IP, and
    no bootstrap address names a global one. A node of a public network is bootstrapped
    from public addresses, so ``auto`` is strict there.
    """
    if setting not in PRIVATE_ADDRS_SETTINGS:
        raise ValueError(f"private addresses setting must be one of {PRIVATE_ADDRS_SETTINGS}")
    if setting != "auto":
        return setting == "allow"
    boot = [_base_ip(a) for a in bootstrap]
    if any(ip is not None and ip.is_global for ip in boot):
        return False
    return any(ip is not None and not ip.is_unspecified and not ip.is_global
               for ip in [*boot, *(_base_ip(a) for a in listen)])


def _base_ip(addr: str) -> IPAddress | None:
    """The IP of one of our own listen or bootstrap multiaddrs (any port, any suffix)."""
    parts = addr.split("/")
    if len(parts) < 3 or parts[0] != "" or parts[1] not in ("ip4", "ip6"):
        return None
    try:
        return ipaddress.ip_address(parts[2])
    except ValueError:
        return None


class DialBudget:
    """ADDR-5: a token bucket of dials (``rate`` per second, ``burst`` at once) and at most
    ``concurrency`` dials in flight."""

    def __init__(self, rate: float = DIAL_RATE_PER_S, burst: int = DIAL_BURST,
                 concurrency: int = DIAL_CONCURRENCY) -> None:
        self.rate = rate
        self.burst = burst
        self.concurrency = concurrency
        self.in_flight = 0
        self._tokens = float(burst)
        self._last: float | None = None

    def try_start(self, now: float) -> bool:
        """Take a dial token and a slot; False when either is spent."""
        if self._last is not None:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self.in_flight >= self.concurrency or self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        self.in_flight += 1
        return True

    def finished(self) -> None:
        self.in_flight -= 1

    def next_token_in(self, now: float) -> float:
        """Seconds until a token is available (0 if one is); ignores the concurrency slot."""
        tokens = self._tokens
        if self._last is not None:
            tokens = min(float(self.burst), tokens + (now - self._last) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
