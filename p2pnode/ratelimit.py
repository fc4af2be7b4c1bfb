"""Token buckets keyed by peer, and bounds on inbound streams; pure (the caller passes
``now``)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    last: float


class PeerRateLimiter:
    """Allow ``burst`` events at once and ``rate`` per second after that, per key."""

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        # Least recently seen first, so forgetting the stalest key is O(1).
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self.max_keys:
                # Forget the stalest key rather than grow without bound.
                self._buckets.popitem(last=False)
            b = self._buckets[key] = _Bucket(tokens=float(self.burst), last=now)
        else:
            self._buckets.move_to_end(key)
        b.tokens = min(float(self.burst), b.tokens + (now - b.last) * self.rate)
        b.last = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return True
        return False

    def available(self, key: str, now: float) -> float:
        """The events ``key`` could have at ``now``, without spending any (a key never
        seen has the whole burst)."""
        b = self._buckets.get(key)
        if b is None:
            return float(self.burst)
        return min(float(self.burst), b.tokens + (now - b.last) * self.rate)


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Bounds on the inbound streams of one protocol (spec 04 XCH-12, spec 05 BLOB-15)."""

    per_peer: int
    """Streams of one peer open at once."""
    total: int
    """Streams of all peers open at once."""
    rate: float
    """New streams per second of one peer, once its burst is spent."""
    burst: int
    """New streams one peer may open at once."""


class StreamAdmission:
    """Which inbound streams a handler serves; pure (the caller passes ``now``).

    ``admit`` takes a token of the peer's bucket for every stream it is asked about, admitted
    or not, so a peer that keeps opening streams past its concurrency bound also spends its
    rate. Every admitted stream must be released exactly once.
    """

    def __init__(self, limits: StreamLimits, max_keys: int = 10_000) -> None:
        self.limits = limits
        self._rate = PeerRateLimiter(limits.rate, limits.burst, max_keys)
        self._open: dict[str, int] = {}
        self.total = 0
        """Streams open now, of all peers."""

    def admit(self, peer: str, now: float) -> bool:
        if not self._rate.allow(peer, now):
            return False
        held = self._open.get(peer, 0)
        if held >= self.limits.per_peer or self.total >= self.limits.total:
            return False
        self._open[peer] = held + 1
        self.total += 1
        return True

    def release(self, peer: str) -> None:
        held = self._open[peer] - 1
        if held:
            self._open[peer] = held
        else:
            del self._open[peer]
        self.total -= 1

    def open_streams(self, peer: str) -> int:
        """Streams of ``peer`` open now."""
        return self._open.get(peer, 0)
