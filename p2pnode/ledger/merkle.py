"""Epoch roots: a Merkle tree over (account, cumulative amount) leaves (spec 07 §5, LGR-12..LGR-14).

    leaf(account, amount) = keccak256(0x00 || account || uint256_be(amount))     ; 65 bytes in
    node(x, y)            = keccak256(min(x, y) || max(x, y))                     ; 64 bytes in
    root                  = the one node left after pairing leaves sorted by account,
                            level by level; an odd last node is carried up unchanged;
                            the root of no leaves is 32 zero bytes

keccak-256 and sorted pairs are what an EVM contract checks cheaply (a proof is the list
of siblings, no left/right bits); the 0x00 prefix and the 65-byte leaf input keep a leaf
from ever equalling an inner node (whose input is 64 bytes). Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

ACCOUNT_SIZE = 32
MAX_AMOUNT = (1 << 256) - 1
EMPTY_ROOT = bytes(32)
MAX_DEPTH = 64


class _Hasher(Protocol):
    def digest(self) -> bytes: ...


def _keccak() -> Callable[[bytes], _Hasher]:
    try:
        import sha3  # type: ignore[import-untyped]  # safe-pysha3: ~1 us a hash

        return sha3.keccak_256  # type: ignore[no-any-return]
    except ImportError:  # pragma: no cover - the slower portable fallback
        from Crypto.Hash import keccak

        return lambda data: keccak.new(digest_bits=256, data=data)


_KECCAK = _keccak()


def keccak256(data: bytes) -> bytes:
    return _KECCAK(data).digest()


def leaf(account: bytes, amount: int) -> bytes:
    if len(account) != ACCOUNT_SIZE:
        raise ValueError("an account is a 32-byte key")
    if not 0 <= amount <= MAX_AMOUNT:
        raise ValueError("an amount is a uint256")
    return keccak256(b"\x00" + account + amount.to_bytes(32, "big"))


def node(x: bytes, y: bytes) -> bytes:
    return keccak256(x + y if x <= y else y + x)


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    levels = [leaves]
    k = _KECCAK
    while len(levels[-1]) > 1:
        lv = levels[-1]
        up = [k(a + b if a <= b else b + a).digest()
              for a, b in zip(lv[0::2], lv[1::2], strict=False)]
        if len(lv) % 2:
            up.append(lv[-1])
        levels.append(up)
    return levels


@dataclass(frozen=True, slots=True)
class Tree:
    """The tree of one epoch: its sorted accounts and every level (level 0: leaves)."""

    accounts: tuple[bytes, ...]
    amounts: tuple[int, ...]
    levels: tuple[tuple[bytes, ...], ...]

    @property
    def root(self) -> bytes:
        return self.levels[-1][0] if self.accounts else EMPTY_ROOT

    def index(self, account: bytes) -> int | None:
        from bisect import bisect_left

        i = bisect_left(self.accounts, account)
        return i if i < len(self.accounts) and self.accounts[i] == account else None

    def proof(self, account: bytes) -> list[bytes] | None:
        """The siblings from ``account``'s leaf up to the root, or None if it has no leaf."""
        i = self.index(account)
        if i is None:
            return None
        path: list[bytes] = []
        for lv in self.levels[:-1]:
            sibling = i ^ 1
            if sibling < len(lv):
                path.append(lv[sibling])
            i //= 2
        return path


def build(balances: dict[bytes, int]) -> Tree:
    """LGR-12: the tree of (account, cumulative amount) pairs; accounts with 0 have no leaf."""
    accounts = sorted(a for a, v in balances.items() if v > 0)
    for a in accounts:
        if len(a) != ACCOUNT_SIZE:
            raise ValueError("an account is a 32-byte key")
    amounts = [balances[a] for a in accounts]
    if amounts and not 0 < max(amounts) <= MAX_AMOUNT:
        raise ValueError("an amount is a uint256")
    k, zero = _KECCAK, b"\x00"
    leaves = [k(zero + a + v.to_bytes(32, "big")).digest()
              for a, v in zip(accounts, amounts, strict=True)]
    levels = _levels(leaves) if leaves else [[]]
    return Tree(tuple(accounts), tuple(amounts), tuple(tuple(lv) for lv in levels))


def root_of(balances: dict[bytes, int]) -> bytes:
    return build(balances).root


def verify(root: bytes, account: bytes, amount: int, path: Sequence[bytes]) -> bool:
    """LGR-14: whether ``path`` proves the leaf (account, amount) under ``root``."""
    if len(path) > MAX_DEPTH or any(len(p) != 32 for p in path):
        return False
    try:
        h = leaf(account, amount)
    except ValueError:
        return False
    for sibling in path:
        h = node(h, sibling)
    return h == root
