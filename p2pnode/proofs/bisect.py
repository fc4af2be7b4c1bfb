"""The bisection game between two workers whose checkpoint chains disagree (spec 06 DSP).

Each worker committed to a chain of checkpoints (WSM-3): entry i is the 41 bytes
``fuel (8, big-endian) || done (1) || state digest (32)`` and the commitment is the RFC 6962
root of the entries with their count. The referee asks both for the same entries, each
with its audit path, halving the range between the last entry they agree on and the first
they do not, until the two are adjacent: the *segment*. It then re-executes that segment
alone, from the agreed state, and whoever claimed another result for it loses.

This module is the referee's state machine, pure: it says which index to ask for next
(:class:`Ask`), takes both answers, and ends with either a :class:`Lost` (a party answered
with a bad path or an impossible chain) or a :class:`Segment` to replay; :func:`settle`
turns the replay's result into the outcome. Index -1 stands for the run's start (the module
and its input), which both parties share by definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from p2pnode.proofs import rows

ENTRY_SIZE = 41
START = -1
CHAIN_KEYS = frozenset({"chain", "checkpoints"})  # a step job's result proof (WSM-5)


def committed_chain(proof: dict[str, Any]) -> Claim | None:
    """WSM-5: the chain commitment of a step job's ``job.result.proof``, or None."""
    root, count = proof.get("chain"), proof.get("checkpoints")
    if set(proof) != CHAIN_KEYS or not isinstance(root, bytes) or len(root) != 32 or \
            not isinstance(count, int) or isinstance(count, bool) or count < 1:
        return None
    return Claim(root, count)


@dataclass(frozen=True, slots=True)
class Entry:
    fuel: int
    done: bool
    digest: bytes

    def encode(self) -> bytes:
        return self.fuel.to_bytes(8, "big") + bytes([self.done]) + self.digest

    @classmethod
    def decode(cls, b: bytes) -> Entry | None:
        if len(b) != ENTRY_SIZE or b[8] > 1:
            return None
        return cls(int.from_bytes(b[:8], "big"), bool(b[8]), b[9:])


@dataclass(frozen=True, slots=True)
class Claim:
    """A worker's commitment: the root of its chain's entries and their count."""

    root: bytes
    count: int


@dataclass(frozen=True, slots=True)
class Answer:
    entry: bytes  # the 41 entry bytes at the index asked for
    path: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Ask:
    index: int


@dataclass(frozen=True, slots=True)
class Lost:
    """The game ended without a replay: these parties (0, 1) lost, and why."""

    losers: frozenset[int]
    why: str


@dataclass(frozen=True, slots=True)
class Segment:
    """Replay from ``start`` (index, and its agreed entry; None for the run's start) to the
    next checkpoint; ``claims`` are the parties' entries at ``start + 1``."""

    start: int
    agreed: Entry | None
    claims: tuple[Entry, Entry]


Step = Ask | Lost | Segment


class Bisection:
    """The referee's side of one dispute; ``rounds`` counts the questions asked."""

    def __init__(self, a: Claim, b: Claim) -> None:
        self.claims = (a, b)
        self.m = min(a.count, b.count)
        self.rounds = 0
        self.lo = START  # last index both agree on
        self.lo_entry: Entry | None = None
        self.hi = self.m - 1  # first index known to differ, once established
        self.hi_entries: tuple[Entry, Entry] | None = None
        self.asked: int | None = None
        self.outcome: Lost | Segment | None = None

    def start(self) -> Step:
        if self.m < 1:
            losers = frozenset(i for i, c in enumerate(self.claims) if c.count < 1)
            return self._end(Lost(losers, "an empty chain"))
        return self._ask(self.m - 1)

    def _ask(self, index: int) -> Ask:
        self.asked = index
        self.rounds += 1
        return Ask(index)

    def _end(self, outcome: Lost | Segment) -> Lost | Segment:
        self.outcome = outcome
        return outcome

    def _open(self, party: int, ans: Answer | None, index: int) -> Entry | None:
        if ans is None:
            return None
        e = Entry.decode(ans.entry)
        c = self.claims[party]
        if e is None or not rows.verify_path(rows.leaf_hash(ans.entry), index, c.count,
                                             ans.path, c.root):
            return None
        # A chain is impossible if it ends before done or goes on after it.
        if e.done != (index == c.count - 1):
            return None
        return e

    def answer(self, a: Answer | None, b: Answer | None) -> Step:
        """Both parties' answers to the last :class:`Ask` (None: no valid answer in time)."""
        if self.outcome is not None:
            return self.outcome
        assert self.asked is not None
        i = self.asked
        ea, eb = self._open(0, a, i), self._open(1, b, i)
        bad = frozenset(p for p, e in ((0, ea), (1, eb)) if e is None)
        if bad:
            return self._end(Lost(bad, f"no valid entry {i}"))
        assert ea is not None and eb is not None
        if i == self.m - 1 and self.hi_entries is None:  # the opening question
            if ea == eb:
                # Equal final entries (done in both, so the counts are equal too: _open
                # refuses a done entry before a chain's end): the same final state and
                # the same output. Nothing to settle.
                return self._end(Lost(frozenset(), "the same final state"))
            self.hi_entries = (ea, eb)
        elif ea == eb:
            self.lo, self.lo_entry = i, ea
        else:
            self.hi, self.hi_entries = i, (ea, eb)
        # Fuel only grows along a chain: claims that break it lose at once.
        for p, e in ((0, ea), (1, eb)):
            if self.lo_entry is not None and i > self.lo and e.fuel < self.lo_entry.fuel:
                return self._end(Lost(frozenset({p}), "fuel went down"))
        if self.hi - self.lo == 1:
            assert self.hi_entries is not None
            return self._end(Segment(self.lo, self.lo_entry, self.hi_entries))
        return self._ask((self.lo + self.hi) // 2)


def settle(segment: Segment, replayed: Entry) -> Lost:
    """The replay of ``segment`` gave ``replayed``: whoever claimed otherwise loses."""
    losers = frozenset(p for p, e in enumerate(segment.claims) if e != replayed)
    return Lost(losers, "the replayed segment differs from the claim")


def max_rounds(checkpoints: int) -> int:
    """The most questions a dispute over chains of that many entries (at least one) takes:
    the opening one, then ceil(log2(checkpoints)) halvings."""
    return 1 + (max(1, checkpoints) - 1).bit_length()
