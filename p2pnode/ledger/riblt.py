"""Rateless invertible Bloom lookup tables: the coding behind ledger set reconciliation.

After Yang, Gilad and Alizadeh, "Practical Rateless Set Reconciliation" (SIGCOMM 2024).
A replica encodes its set of 32-byte keys (digests, so uniformly random) into an unbounded
stream of *coded symbols*; a peer subtracts its own stream from a prefix of it and peels
the difference out of the result. About 1.35 symbols per difference suffice for large
differences, whatever the sizes of the sets. Everything below is fixed bit for bit.

    H(x)      = sha256(b"p2pnode/sync/1" || x)               x: a 32-byte key
    check(x)  = H[0:8]  as an unsigned 64-bit little-endian integer
    seed(x)   = H[8:16] as an unsigned 64-bit little-endian integer

    symbol    = (sum, chk, count): the XOR of the keys mapped to it (32 bytes), the XOR
                of their check, and how many they are (signed once two lists are
                subtracted: XOR the sums, XOR the chks, subtract the counts)

A key's indices start at 0. From index j the next is j + g, drawn from a splitmix64
generator whose state s starts at seed(x), all arithmetic mod 2^64:

    s = s + 0x9E3779B97F4A7C15
    z = s
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    z = z ^ (z >> 31)
    q = (z >> 11) + 1                            an integer in [1, 2^53]
    u = q / 2^53                                 exact in binary64
    g = max(1, ceil((j + 1.5) * (1 / sqrt(u) - 1)))

each operation of the last line in IEEE-754 binary64, in that order, not fused. It
samples the gap by inverting P(no index in (j, j+g]) = prod (i / (i + 2)), which is
about ((j + 1.5) / (j + g + 1.5))^2, so a key is in symbol i with probability near
2 / (i + 2). A key whose next index would exceed 2^40 appears in no later symbol.

Encoding the prefix [0, m) of a set: each key joins each of its symbols below m. Symbol 0
holds every key, so its count is the size of the set.

Decoding: D_i = R_i - I_i, the responder's symbols minus the initiator's. A symbol is
*pure* when its count is +1 or -1 and chk == check(sum); then sum is a key only the
responder (+1) or only the initiator (-1) holds. A decoded key is removed from each of its
symbols received so far, and from those received later, and the symbols it touched are
looked at again. Decoding is complete once every D_i is zero.

:class:`Encoder` is the vectorized encoder (numpy), resumable with :meth:`Encoder.extend`;
:func:`reference_encode` is the pure-Python one it must equal; :class:`Decoder` peels.
Pure, no I/O.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

DOMAIN = b"p2pnode/sync/1"
KEY_SIZE = 32
SYMBOL_SIZE = 40  # on the wire: sum (32 bytes), then chk (8 bytes, little-endian)
MAX_INDEX = 1 << 40
MAX_COUNT = 1 << 40

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_TWO53 = float(1 << 53)
_NEVER = 1 << 62  # a key's index once it appears in no later symbol

U64 = NDArray[np.uint64]
I64 = NDArray[np.int64]


class Inconsistent(ValueError):
    """The symbols being decoded contradict themselves or the decoder's own set."""


def key_hash(key: bytes) -> tuple[int, int]:
    """``(check(key), seed(key))``."""
    h = hashlib.sha256(DOMAIN + key).digest()
    return int.from_bytes(h[0:8], "little"), int.from_bytes(h[8:16], "little")


def check(key: bytes) -> int:
    return key_hash(key)[0]


def next_index(j: int, state: int) -> tuple[int | None, int]:
    """The index after ``j`` (None: beyond 2^40) and the generator's new state."""
    s = (state + _GOLDEN) & _M64
    z = s
    z = ((z ^ (z >> 30)) * _MIX1) & _M64
    z = ((z ^ (z >> 27)) * _MIX2) & _M64
    z ^= z >> 31
    u = ((z >> 11) + 1) / (1 << 53)
    g = max(1, math.ceil((j + 1.5) * (1.0 / math.sqrt(u) - 1.0)))
    nxt = j + g
    return (nxt if nxt <= MAX_INDEX else None), s


def indices(key: bytes, stop: int) -> Iterator[int]:
    """The indices of ``key`` below ``stop``, in increasing order."""
    j: int | None = 0
    state = key_hash(key)[1]
    while j is not None and j < stop:
        yield j
        j, state = next_index(j, state)


def _check_key(key: bytes) -> bytes:
    if type(key) is not bytes or len(key) != KEY_SIZE:
        raise ValueError("a key must be %d bytes" % KEY_SIZE)
    return key


@dataclass(frozen=True, slots=True, eq=False)
class Symbols:
    """Consecutive coded symbols: ``sums`` (k, 4) holds the little-endian 64-bit words of
    each 32-byte sum, ``chk`` (k,) the chks, ``count`` (k,) the counts."""

    sums: U64
    chk: U64
    count: I64

    @classmethod
    def zeros(cls, k: int) -> Symbols:
        return cls(np.zeros((k, 4), np.uint64), np.zeros(k, np.uint64), np.zeros(k, np.int64))

    @classmethod
    def from_bytes(cls, data: bytes, counts: Iterable[int]) -> Symbols:
        """The symbols of the wire form ``data`` (40 bytes each) with their counts."""
        cnt = np.fromiter(counts, np.int64)
        if len(data) != SYMBOL_SIZE * len(cnt):
            raise ValueError("%d bytes for %d symbols" % (len(data), len(cnt)))
        words = np.frombuffer(data, "<u8").reshape(len(cnt), 5).astype(np.uint64)
        return cls(np.ascontiguousarray(words[:, :4]), np.ascontiguousarray(words[:, 4]), cnt)

    def to_bytes(self) -> bytes:
        """The wire form: for each symbol its sum, then its chk little-endian."""
        words = np.empty((len(self), 5), "<u8")
        words[:, :4] = self.sums
        words[:, 4] = self.chk
        return words.tobytes()

    def __len__(self) -> int:
        return len(self.count)

    def __sub__(self, other: Symbols) -> Symbols:
        return Symbols(self.sums ^ other.sums, self.chk ^ other.chk, self.count - other.count)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Symbols):
            return NotImplemented
        return bool(np.array_equal(self.sums, other.sums) and np.array_equal(
            self.chk, other.chk) and np.array_equal(self.count, other.count))

    def symbol(self, i: int) -> tuple[bytes, int, int]:
        """Symbol ``i`` as ``(sum, chk, count)``."""
        return (self.sums[i].astype("<u8").tobytes(), int(self.chk[i]), int(self.count[i]))


def reference_encode(keys: Iterable[bytes], start: int, stop: int) -> Symbols:
    """Symbols [start, stop) of ``keys``, one key and one index at a time."""
    k = stop - start
    sums, chks, counts = [0] * k, [0] * k, [0] * k
    for key in keys:
        x, c = int.from_bytes(_check_key(key), "little"), check(key)
        for i in indices(key, stop):
            if i >= start:
                sums[i - start] ^= x
                chks[i - start] ^= c
                counts[i - start] += 1
    data = b"".join(s.to_bytes(32, "little") + c.to_bytes(8, "little")
                    for s, c in zip(sums, chks, strict=True))
    return Symbols.from_bytes(data, counts)


def _advance(j: I64, state: U64) -> tuple[I64, U64]:
    """:func:`next_index` over arrays; beyond 2^40 becomes ``_NEVER``."""
    s = state + np.uint64(_GOLDEN)
    z = (s ^ (s >> np.uint64(30))) * np.uint64(_MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    z = z ^ (z >> np.uint64(31))
    u = ((z >> np.uint64(11)) + np.uint64(1)).astype(np.float64) / _TWO53
    g = np.ceil((j.astype(np.float64) + 1.5) * (1.0 / np.sqrt(u) - 1.0))
    g = np.minimum(np.maximum(g, 1.0), float(2 * MAX_INDEX))
    nxt = j + g.astype(np.int64)
    return np.where(nxt > MAX_INDEX, np.int64(_NEVER), nxt), s


class Encoder:
    """The symbols of a set, produced in consecutive ranges.

    Each key keeps its first index at or above the position ``m`` and its generator state,
    so :meth:`extend` costs only the indices it covers. :meth:`join` lets a key in later,
    each key with a weight (its contribution to the counts, +1 for a plain set)."""

    def __init__(self, keys: Iterable[bytes] = ()) -> None:
        ks = [_check_key(k) for k in keys]
        self.m = 0
        n = len(ks)
        self._words: U64 = np.frombuffer(b"".join(ks), "<u8").reshape(n, 4).astype(np.uint64)
        hashes = b"".join(hashlib.sha256(DOMAIN + k).digest()[:16] for k in ks)
        ch = np.frombuffer(hashes, "<u8").reshape(n, 2).astype(np.uint64)
        self._chk: U64 = np.ascontiguousarray(ch[:, 0])
        self._state: U64 = np.ascontiguousarray(ch[:, 1])
        self._idx: I64 = np.zeros(n, np.int64)
        self._weight: I64 = np.ones(n, np.int64)
        self._joined: list[tuple[bytes, int, int, int, int]] = []

    def __len__(self) -> int:
        return len(self._idx) + len(self._joined)

    def join(self, key: bytes, weight: int = 1) -> list[int]:
        """Add ``key`` from the current position on; return its indices below it (the
        symbols already produced that the caller must account for itself)."""
        c, state = key_hash(_check_key(key))
        below: list[int] = []
        j: int | None = 0
        while j is not None and j < self.m:
            below.append(j)
            j, state = next_index(j, state)
        self._joined.append((key, c, _NEVER if j is None else j, state, weight))
        return below

    def _merge(self) -> None:
        if not self._joined:
            return
        js = self._joined
        self._joined = []
        words = np.frombuffer(b"".join(k for k, *_ in js), "<u8").reshape(len(js), 4)
        self._words = np.concatenate([self._words, words.astype(np.uint64)])
        self._chk = np.concatenate([self._chk, np.array([c for _, c, *_ in js], np.uint64)])
        self._idx = np.concatenate([self._idx, np.array([j[2] for j in js], np.int64)])
        self._state = np.concatenate([self._state, np.array([j[3] for j in js], np.uint64)])
        self._weight = np.concatenate([self._weight, np.array([j[4] for j in js], np.int64)])

    def extend(self, stop: int) -> Symbols:
        """Symbols [m, stop); the position becomes ``stop``."""
        start = self.m
        if not start <= stop <= MAX_INDEX + 1:
            raise ValueError("cannot extend from %d to %d" % (start, stop))
        self._merge()
        out = Symbols.zeros(stop - start)
        act = np.flatnonzero(self._idx < stop)
        while act.size:
            j = self._idx[act]
            pos = j - start
            np.bitwise_xor.at(out.sums, pos, self._words[act])
            np.bitwise_xor.at(out.chk, pos, self._chk[act])
            np.add.at(out.count, pos, self._weight[act])
            nxt, state = _advance(j, self._state[act])
            self._idx[act] = nxt
            self._state[act] = state
            act = act[nxt < stop]
        self.m = stop
        return out


class Decoder:
    """Peels difference symbols D_i = R_i - I_i, pushed in consecutive ranges.

    ``remote`` collects the keys decoded with +1 (only the responder holds them),
    ``local`` those with -1. With ``own`` given (the decoding side's set), a key decoded
    against it raises :class:`Inconsistent`, as does a key decoded twice or more than
    ``remote_max`` remote keys: symbols that do so were not made from any set."""

    def __init__(self, own: Collection[bytes] | None = None,
                 remote_max: int = MAX_COUNT) -> None:
        self.remote: list[bytes] = []
        self.local: list[bytes] = []
        self._own = own
        self._remote_max = remote_max
        self._sum: list[int] = []
        self._chk: list[int] = []
        self._cnt: list[int] = []
        self._nonzero = 0
        self._seen: set[bytes] = set()
        self._later = Encoder()  # the decoded keys, to remove from later symbols

    @property
    def m(self) -> int:
        return len(self._cnt)

    @property
    def complete(self) -> bool:
        """Every symbol so far (at least one) is zero: nothing is left to decode."""
        return self.m > 0 and self._nonzero == 0

    def push(self, diff: Symbols) -> None:
        """Take the next ``len(diff)`` difference symbols and peel what they allow."""
        start = self.m
        d = diff - self._later.extend(start + len(diff))
        data = d.to_bytes()
        for i, c in enumerate(d.count.tolist()):
            o = SYMBOL_SIZE * i
            s = int.from_bytes(data[o:o + 32], "little")
            h = int.from_bytes(data[o + 32:o + 40], "little")
            self._sum.append(s)
            self._chk.append(h)
            self._cnt.append(c)
            self._nonzero += bool(s or h or c)
        self._peel(list(range(start, self.m)))

    def _peel(self, todo: list[int]) -> None:
        sums, chks, cnts = self._sum, self._chk, self._cnt
        while todo:
            i = todo.pop()
            sign = cnts[i]
            if sign != 1 and sign != -1:
                continue
            key = sums[i].to_bytes(32, "little")
            c = check(key)
            if c != chks[i]:
                continue
            self._take(key, sign)
            x = sums[i]
            for t in self._later.join(key, sign):
                was = bool(sums[t] or chks[t] or cnts[t])
                sums[t] ^= x
                chks[t] ^= c
                cnts[t] -= sign
                self._nonzero += bool(sums[t] or chks[t] or cnts[t]) - was
                todo.append(t)

    def _take(self, key: bytes, sign: int) -> None:
        if key in self._seen:
            raise Inconsistent("a key decoded twice")
        own = self._own
        if own is not None and (key in own) != (sign < 0):
            raise Inconsistent("a decoded key contradicts the decoder's set")
        if sign > 0 and len(self.remote) >= self._remote_max:
            raise Inconsistent("more remote keys than the remote set holds")
        self._seen.add(key)
        (self.remote if sign > 0 else self.local).append(key)
