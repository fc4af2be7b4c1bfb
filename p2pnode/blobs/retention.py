"""Which blobs the store lets go, and in what order (spec 05 §4.4, local policy), sans-IO.

A blob is *pinned* while a job that is not terminal still needs it: a requester's inputs
and the outputs it is checking, a worker's inputs and the output it has not been judged
on. A pinned blob is never evicted. Every other blob is kept for ``retention_ms`` after
its last use and then evicted; under pressure (a put that would take the store over its
quota) unpinned blobs go least recently used first, ties broken by content id so that
every replica of the rule picks the same ones, until the store is down to
``PRESSURE_TARGET_PERCENT`` of its quota (or nothing unpinned is left): each eviction reads
the whole index, so one frees room for many puts. If evicting every unpinned blob would still
not make room, nothing is evicted for it and the put is refused: emptying the cache for a
put that fails anyway would cost every later job its inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass

PRESSURE_TARGET_PERCENT = 90


@dataclass(frozen=True, slots=True)
class HeldBlob:
    """One blob in the store's index."""

    cid: bytes
    size: int
    used_ms: int  # wall-clock ms of its last put or read


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    quota_bytes: int
    retention_ms: int


@dataclass(frozen=True, slots=True)
class GcPlan:
    """What to delete, why, and whether ``incoming`` bytes then fit under the quota."""

    expired: tuple[bytes, ...]
    pressure: tuple[bytes, ...]
    fits: bool
    usage_after: int

    @property
    def evict(self) -> tuple[bytes, ...]:
        return self.expired + self.pressure


def plan_gc(held: Iterable[HeldBlob], pinned: Set[bytes], now_ms: int,
            policy: RetentionPolicy, incoming: int = 0) -> GcPlan:
    """The blobs to evict now so that ``incoming`` more bytes fit (0: a periodic sweep)."""
    blobs = list(held)
    usage = sum(b.size for b in blobs)
    cutoff = now_ms - policy.retention_ms
    loose = sorted((b for b in blobs if b.cid not in pinned), key=lambda b: (b.used_ms, b.cid))
    expired = [b for b in loose if b.used_ms <= cutoff]
    usage -= sum(b.size for b in expired)
    rest = loose[len(expired):]  # sorted by last use, all newer than the cutoff
    pressure: list[bytes] = []
    if usage + incoming > policy.quota_bytes:
        freeable = sum(b.size for b in rest)
        target = policy.quota_bytes * PRESSURE_TARGET_PERCENT // 100
        if usage - freeable + incoming <= policy.quota_bytes:
            for b in rest:
                if usage + incoming <= target:
                    break
                pressure.append(b.cid)
                usage -= b.size
    return GcPlan(expired=tuple(b.cid for b in expired), pressure=tuple(pressure),
                  fits=usage + incoming <= policy.quota_bytes, usage_after=usage)
