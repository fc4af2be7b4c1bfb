"""What every chain backend is (spec 08, draft): anchors of epoch roots and claims against
the newest one, with the same checks and the same reason codes on every backend.

    anchor(epoch, root, count)      by the epoch's anchorer, or a fallback once it is due
    root_of(epoch)                  the anchored root, or None
    latest()                        (epoch, root) of the newest anchor, or None
    claim(account, cumulative, proof)
                                    pays cumulative - claimed(account) to the account's
                                    payee, if proof shows (account, cumulative) under the
                                    newest root (the ledger's LGR-12 .. LGR-14)
    claimed(account)                what the account was paid so far

The anchorers are an ordered list fixed when the chain is made. The designated anchorer
of epoch e is ``anchorers[e % n]``; the k-th fallback, ``anchorers[(e + k) % n]``, may
anchor from ``closes_at(e) + k * fallback_s`` (:func:`may_anchor`). Epochs are anchored in
increasing order and each once. The rules here are pure; backends apply them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class ChainReason(StrEnum):
    ROOT_EXISTS = "root_exists"  # a second root for an epoch
    STALE_EPOCH = "stale_epoch"  # an epoch at or before the newest anchored one
    NOT_ANCHORER = "not_anchorer"  # not the epoch's anchorer, nor a fallback that is due
    ZERO_ROOT = "zero_root"
    NO_ROOT = "no_root"  # a claim before any anchor
    BAD_PROOF = "bad_proof"  # the proof does not show (account, cumulative) under the root
    NOTHING_TO_CLAIM = "nothing_to_claim"  # cumulative <= claimed: a replay or a lower one
    UNBOUND = "unbound"  # the account has no payee
    UNAVAILABLE = "unavailable"  # the backend could not be reached (retried)


class ChainError(Exception):
    def __init__(self, reason: ChainReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Schedule:
    """When epochs close (the ledger's L and G, in seconds) and how long each fallback
    waits after the one before it."""

    epoch_len_s: int
    grace_s: int
    fallback_s: int

    def closes_at(self, epoch: int) -> int:
        return (epoch + 1) * self.epoch_len_s + self.grace_s


@dataclass(frozen=True, slots=True)
class Anchor:
    epoch: int
    root: bytes
    count: int
    anchorer: str  # the backend's name of the sender (hex key or address)
    at: int  # the block's time, s
    tx: str  # the transaction's id on the backend


@dataclass(frozen=True, slots=True)
class Claim:
    account: bytes
    payee: str
    cumulative: int
    paid: int  # cumulative minus what was claimed before
    epoch: int  # the anchor the proof was checked against
    tx: str


def designated(epoch: int, anchorers: Sequence[str], k: int = 0) -> str:
    return anchorers[(epoch + k) % len(anchorers)]


def may_anchor(epoch: int, sender: str, now_s: int, anchorers: Sequence[str],
               schedule: Schedule) -> bool:
    """Whether ``sender`` may anchor ``epoch`` at ``now_s``: it is the k-th in the rotation
    from the designated anchorer and ``now_s >= closes_at(epoch) + k * fallback_s``."""
    n = len(anchorers)
    for k in range(n):
        if anchorers[(epoch + k) % n] == sender:
            return now_s >= schedule.closes_at(epoch) + k * schedule.fallback_s
    return False


def anchor_refusal(epoch: int, root: bytes, *, held: bytes | None, newest: int | None,
                   sender: str, now_s: int, anchorers: Sequence[str],
                   schedule: Schedule) -> ChainReason | None:
    """ANC-2, ANC-1: why an anchor of ``root`` for ``epoch`` is refused (None: it is not),
    given the root ``held`` for that epoch and the ``newest`` anchored epoch, in this
    order."""
    if len(root) != 32 or root == bytes(32):
        return ChainReason.ZERO_ROOT
    if held is not None:
        return ChainReason.ROOT_EXISTS
    if newest is not None and epoch < newest:
        return ChainReason.STALE_EPOCH
    if not may_anchor(epoch, sender, now_s, anchorers, schedule):
        return ChainReason.NOT_ANCHORER
    return None


def claim_refusal(account: bytes, cumulative: int, proof: Sequence[bytes], *,
                  newest: bytes | None, claimed: int, bound: bool) -> ChainReason | None:
    """CLM-1 .. CLM-3: why a claim is refused (None: it pays ``cumulative - claimed``),
    against the ``newest`` anchored root, in this order."""
    from p2pnode.ledger import merkle

    if newest is None:
        return ChainReason.NO_ROOT
    if not merkle.verify(newest, account, cumulative, list(proof)):
        return ChainReason.BAD_PROOF
    if cumulative <= claimed:
        return ChainReason.NOTHING_TO_CLAIM
    if not bound:
        return ChainReason.UNBOUND
    return None


def claimable(cumulative: int, claimed: int) -> int:
    """What a valid claim of ``cumulative`` pays; ChainError when it pays nothing."""
    if cumulative <= claimed:
        raise ChainError(ChainReason.NOTHING_TO_CLAIM, f"{cumulative} <= claimed {claimed}")
    return cumulative - claimed


class Chain(Protocol):
    """One backend, seen by one sender (a node's anchoring and payout keys)."""

    name: str
    sender: str

    def anchor(self, epoch: int, root: bytes, count: int) -> Anchor: ...

    def root_of(self, epoch: int) -> bytes | None: ...

    def latest(self) -> tuple[int, bytes] | None: ...

    def anchors(self, since: int = 0) -> list[Anchor]: ...

    def claim(self, account: bytes, cumulative: int, proof: Sequence[bytes]) -> Claim: ...

    def claimed(self, account: bytes) -> int: ...

    def bind(self, account: bytes, payee: str) -> None:
        """Record ``account``'s payee (by an anchorer, who checked the account's signed
        binding statement)."""

    def is_anchorer_key(self, key: bytes) -> bool:
        """Whether the node of Ed25519 ``key`` anchors on this chain (ANC-5: whose
        announcements count): devchain, its key is in the rotation; evm, its bound payee
        is."""
        ...
