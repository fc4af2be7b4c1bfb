"""The ledger's state: grow-only sets of credits and slashes, epochs, derived balances and
cumulative roots (spec 07 §3-§5, LGR-6..LGR-14).

    epoch(ts)           = ts // epoch_len                                   (LGR-6)
    closed(e, now)      = now >= (e + 1) * epoch_len + grace                (LGR-7)
    first_open(now)     = max(0, (now - grace) // epoch_len)
    settle(x, arrival)  = max(epoch(x.ts), first_open(arrival))             (LGR-8)
    earned(a, s)        = sum of the prices of credits to a settled in s,
                          0 if a slash of a settles in s                    (LGR-9)
    cumulative(a, E)    = sum of earned(a, s) for s <= E                    (LGR-10)
    root(E)             = merkle root of {a: cumulative(a, E) > 0}          (LGR-12)

Merge is set union: an element is added once (by its id), whatever its path, and every
balance is derived from the elements, so no node can raise one by itself. Cumulative
amounts never fall (earned is never negative), so a claim against the newest root pays
``cumulative - claimed`` (the chain chapter). A late element (its epoch closed when it
arrived) is not lost: it settles in the first open epoch, keeping its own ts. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from p2pnode.ledger import merkle
from p2pnode.ledger.elements import Element, Kind

DEFAULT_EPOCH_LEN_MS = 3_600_000
DEFAULT_GRACE_MS = 30_000


@dataclass(frozen=True, slots=True)
class Params:
    epoch_len_ms: int = DEFAULT_EPOCH_LEN_MS
    grace_ms: int = DEFAULT_GRACE_MS

    def __post_init__(self) -> None:
        if self.epoch_len_ms < 1000:
            raise ValueError("an epoch lasts at least 1 s")
        if not 0 <= self.grace_ms < self.epoch_len_ms:
            raise ValueError("the grace period must be shorter than an epoch")

    def epoch(self, ts_ms: int) -> int:
        return ts_ms // self.epoch_len_ms

    def closes_at(self, e: int) -> int:
        """LGR-7: the wall ms at which epoch ``e`` closes."""
        return (e + 1) * self.epoch_len_ms + self.grace_ms

    def first_open(self, now_ms: int) -> int:
        return max(0, (now_ms - self.grace_ms) // self.epoch_len_ms)

    def last_closed(self, now_ms: int) -> int:
        """The newest closed epoch at ``now_ms`` (-1: none)."""
        return self.first_open(now_ms) - 1

    def settle(self, ts_ms: int, arrival_ms: int) -> int:
        """LGR-8: the epoch an element of ``ts_ms`` arriving at ``arrival_ms`` settles in."""
        return max(self.epoch(ts_ms), self.first_open(arrival_ms))


@dataclass(slots=True)
class Ledger:
    """The elements a node holds, with their settlement epochs, and what follows from them.

    ``frozen`` is the newest epoch whose root this node has fixed (LGR-11): no element's
    settlement may move into or within a frozen epoch.
    """

    params: Params = field(default_factory=Params)
    held: dict[bytes, tuple[Element, int]] = field(default_factory=dict)
    frozen: int = -1

    def __contains__(self, element_id: bytes) -> bool:
        return element_id in self.held

    def __len__(self) -> int:
        return len(self.held)

    def settlement(self, el: Element, arrival_ms: int, claim: int | None = None) -> int:
        """LGR-8: where ``el`` settles if it arrives at ``arrival_ms``, told by the peer it
        came from that it settled in ``claim`` (a sync item) or told nothing (gossip)."""
        p = self.params
        own, floor = p.epoch(el.ts), self.frozen + 1
        if claim is None:
            return max(own, p.first_open(arrival_ms), floor)
        return max(own, min(claim, p.epoch(arrival_ms)), floor)

    def add(self, el: Element, arrival_ms: int, claim: int | None = None) -> int | None:
        """Add ``el`` (checked by :func:`elements.open_element`), or lower its settlement
        epoch to a peer's earlier claim while that epoch is open (LGR-8: the settlement of
        an element is the least claimed, so replicas converge on it). The epoch it now
        settles in, or None if nothing changed (merge is idempotent)."""
        s = self.change(el, arrival_ms, claim)
        if s is not None:
            held = self.held.get(el.id)
            self.held[el.id] = (held[0] if held else el, s)
        return s

    def change(self, el: Element, arrival_ms: int, claim: int | None = None) -> int | None:
        """What :meth:`add` would do, without doing it: the settlement epoch ``el`` would
        now have, or None if it would not change."""
        s = self.settlement(el, arrival_ms, claim)
        held = self.held.get(el.id)
        if held is not None and (s >= held[1] or held[1] <= self.frozen):
            return None
        return s

    def restore(self, el: Element, settle: int) -> None:
        """Put back an element with the settlement epoch it was stored with."""
        self.held[el.id] = (el, settle)

    def freeze(self, epoch: int) -> None:
        self.frozen = max(self.frozen, epoch)

    @property
    def late(self) -> int:
        """Elements that settle after their own epoch."""
        return sum(1 for el, s in self.held.values() if s > self.params.epoch(el.ts))

    def merge(self, other: Ledger, arrival_ms: int) -> None:
        for el, _ in other.held.values():
            self.add(el, arrival_ms)

    def elements(self, kind: Kind | None = None) -> Iterable[Element]:
        return (el for el, _ in self.held.values() if kind is None or el.kind is kind)

    def count(self, through: int) -> int:
        """The elements settled in epochs up to ``through``."""
        return sum(1 for _, s in self.held.values() if s <= through)

    def earned(self, through: int) -> dict[tuple[bytes, int], int]:
        """LGR-9: (account, settlement epoch) -> what it earned there, epochs <= ``through``."""
        gross: dict[tuple[bytes, int], int] = {}
        slashed: set[tuple[bytes, int]] = set()
        for el, s in self.held.values():
            if s > through:
                continue
            if el.kind is Kind.SLASH:
                slashed.add((el.account, s))
            else:
                gross[(el.account, s)] = gross.get((el.account, s), 0) + el.amount
        return {k: v for k, v in gross.items() if k not in slashed}

    def balances(self, through: int) -> dict[bytes, int]:
        """LGR-10: account -> cumulative amount through epoch ``through``."""
        out: dict[bytes, int] = {}
        for (account, _), v in self.earned(through).items():
            out[account] = out.get(account, 0) + v
        return {a: v for a, v in out.items() if v > 0}

    def spent(self, through: int) -> dict[bytes, int]:
        """What each requester's credits settled through ``through`` pay (informational)."""
        out: dict[bytes, int] = {}
        for el, s in self.held.values():
            if el.kind is Kind.CREDIT and s <= through:
                out[el.payer] = out.get(el.payer, 0) + el.amount
        return out

    def tree(self, through: int) -> merkle.Tree:
        """LGR-12: the tree of epoch ``through``'s cumulative balances."""
        return merkle.build(self.balances(through))

    def settled_epochs(self) -> list[int]:
        return sorted({s for _, s in self.held.values()})

    def fingerprint(self) -> bytes:
        """A digest of the element ids held (equal sets, equal digests)."""
        import hashlib

        return hashlib.sha256(b"".join(sorted(self.held))).digest()
