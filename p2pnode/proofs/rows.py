"""The row commitment of a matrix: an RFC 6962 Merkle tree over its rows (spec 06 §2).

A worker signs the root of its output's rows with its result, before it learns the
verifier's randomness. One wrong row is then evidence of O(cols) bytes plus a path of
ceil(log2(rows)) hashes, instead of the whole output.

Hashing (RFC 6962 §2.1, SHA-256), for the rows r_0 .. r_{n-1} of an int64 matrix, each the
``cols * 8`` little-endian bytes the matrix blob holds for it (spec 04 §7.2)::

    leaf(r)      = SHA-256(0x00 || r)
    node(l, r)   = SHA-256(0x01 || l || r)
    MTH([x])     = leaf(x)
    MTH(D[0:n])  = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n

The 0x00 / 0x01 prefixes keep a leaf from ever being read as a node (second preimages).
Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

LEAF = b"\x00"
NODE = b"\x01"
HASH_SIZE = 32
MAX_PATH = 64  # a path of a tree of fewer than 2^64 leaves
ROWS_KEY = "rows"  # the key of the root in a matmul job.result's proof (PRF-1)


def committed_root(proof: dict[str, Any]) -> bytes | None:
    """The row root a ``job.result``'s ``proof`` commits to, or None if it is malformed."""
    root = proof.get(ROWS_KEY)
    if set(proof) != {ROWS_KEY} or not isinstance(root, bytes) or len(root) != HASH_SIZE:
        return None
    return root


def leaf_hash(row: bytes) -> bytes:
    return hashlib.sha256(LEAF + row).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of_leaves(leaves: Sequence[bytes]) -> bytes:
    """MTH over already hashed leaves (at least one)."""
    if not leaves:
        raise ValueError("a row commitment needs at least one row")
    level = list(leaves)
    # Bottom-up in complete pairs; RFC 6962's split of n at the largest power of two
    # below it gives the same tree as pairing left to right and carrying an odd last node
    # up unchanged.
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def root(rows: Sequence[bytes]) -> bytes:
    return root_of_leaves([leaf_hash(r) for r in rows])


def path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` (RFC 6962 §2.1.1), from the leaf's sibling up."""
    if not 0 <= index < len(leaves):
        raise ValueError("index out of range")
    out: list[bytes] = []
    level, i = list(leaves), index
    while len(level) > 1:
        sibling = i ^ 1
        if sibling < len(level):
            out.append(level[sibling])
        nxt = [node_hash(level[j], level[j + 1]) for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level, i = nxt, i // 2
    return out


def verify_path(leaf: bytes, index: int, size: int, audit: Sequence[bytes],
                expected_root: bytes) -> bool:
    """Whether ``audit`` proves ``leaf`` (a leaf hash) at ``index`` of a tree of ``size``
    leaves with root ``expected_root``. Rejects a path of the wrong length."""
    if not 0 <= index < size or len(audit) > MAX_PATH:
        return False
    h, i, n, k = leaf, index, size, 0
    while n > 1:
        if i ^ 1 < n:  # this node has a sibling at this level
            if k >= len(audit):
                return False
            s = audit[k]
            k += 1
            if len(s) != HASH_SIZE:
                return False
            h = node_hash(s, h) if i & 1 else node_hash(h, s)
        i, n = i // 2, (n + 1) // 2
    return k == len(audit) and h == expected_root
