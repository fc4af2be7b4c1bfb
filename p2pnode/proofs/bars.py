"""Workers barred from leases by fraud proofs (spec 06 FRD-7): a bounded, pure table.

Kept apart from :mod:`p2pnode.proofs.fraud` so that the requester's machine uses it without
importing numpy at a node's start.
"""

from __future__ import annotations

from typing import Any

# How long a proven cheater is barred from leases, from its wrong result's timestamp.
BAR_MS = 3_600_000
# Cheaters a node remembers as barred; beyond it, the bar that ends soonest goes first.
MAX_BARRED = 4096


class BarList:
    """Cheaters barred from leases (FRD-7), at most ``cap``, by the time their bar ends.

    Times are the caller's; a bar never shortens, and the one that ends soonest is let go
    first when full."""

    def __init__(self, cap: int = MAX_BARRED) -> None:
        self.cap = cap
        self._until: dict[bytes, int] = {}
        self._seen: dict[tuple[bytes, bytes], int] = {}  # (cheater, job) -> until

    def __len__(self) -> int:
        return len(self._until)

    def known(self, cheater: bytes, job: bytes) -> bool:
        """Whether this fraud (cheater and job) was taken already: not relayed again."""
        return (cheater, job) in self._seen

    def bar(self, cheater: bytes, job: bytes, until: int, now: int) -> None:
        self._until = {k: v for k, v in self._until.items() if v > now}
        self._seen = {k: v for k, v in self._seen.items() if v > now}
        self._seen[(cheater, job)] = until
        self._until[cheater] = max(until, self._until.get(cheater, 0))
        _trim(self._until, self.cap)
        _trim(self._seen, self.cap)

    def barred(self, worker: bytes, now: int) -> bool:
        return self._until.get(worker, 0) > now

    def snapshot(self, now: int) -> dict[bytes, int]:
        return {k: v for k, v in self._until.items() if v > now}


def _trim(d: dict[Any, int], cap: int) -> None:
    while len(d) > cap:
        del d[min(d, key=d.__getitem__)]
