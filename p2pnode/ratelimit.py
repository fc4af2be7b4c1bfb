"""Token buckets keyed by peer; pure (the caller passes ``now``)."""

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
