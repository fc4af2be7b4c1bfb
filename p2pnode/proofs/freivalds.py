"""Freivalds' check of an int8 x int8 -> int64 matrix product, exact on float64 BLAS.

A claimed product ``c`` of ``a`` (n x k) and ``b`` (k x m) is accepted when
``a @ (b @ r) == c @ r`` for a random m x ``rounds`` matrix ``r`` with entries uniform in
[0, 2^bits). Pure: no clock, no global randomness; ``r`` is expanded from a seed the caller
draws after the worker has committed to ``c``.

Soundness. If ``c != a @ b``, some row d of ``a @ b - c`` is non-zero, say at column j.
For any values of r's other entries, at most one value of r[j] makes ``d . r`` zero, so a
round passes with probability at most 2^-bits, and ``rounds`` independent columns pass with
probability at most 2^-(bits * rounds): ``soundness_bits``.

Exactness. Every entry of a and b has magnitude at most 128, so a true product entry is at
most ``k * 2^14`` in magnitude; a claimed entry beyond that is wrong and refused before any
arithmetic. Then every partial sum of ``b @ r``, ``a @ (b @ r)`` and ``c @ r`` is an integer of
magnitude at most ``k * m * 2^14 * (2^bits - 1)``, whatever order BLAS adds in. Below 2^53
float64 holds each such integer exactly, so the comparison is exact: ``bits_for(k, m)`` is the
largest width that keeps the bound below 2^53 (17 at k = m = 2048, matmul_max_n).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

INT8_MAX_ABS = 128
EXACT_LIMIT = 1 << 53  # float64 represents every integer of smaller magnitude
SOUNDNESS_BITS = 40  # the default target: a wrong product passes with probability <= 2^-40
DOMAIN = b"p2pnode/freivalds/1\x00"
MAX_BITS = 32  # random entries are read from 4 bytes of hash


def entry_bound(k: int) -> int:
    """The largest magnitude an entry of an int8 product with inner dimension k can have."""
    return k * INT8_MAX_ABS * INT8_MAX_ABS


def bits_for(k: int, m: int) -> int:
    """The widest random entries (bits, at most MAX_BITS) for which every sum of the check
    stays exact."""
    per_unit = k * m * INT8_MAX_ABS * INT8_MAX_ABS  # the bound, per unit of max |r|
    bits = 0
    while bits < MAX_BITS and per_unit * ((1 << (bits + 1)) - 1) < EXACT_LIMIT:
        bits += 1
    if bits == 0:
        raise ValueError(f"no exact Freivalds check for k={k}, m={m} on float64")
    return bits


def rounds_for(bits: int, soundness_bits: int = SOUNDNESS_BITS) -> int:
    """Rounds of ``bits``-bit entries for a soundness error of at most 2^-soundness_bits."""
    return math.ceil(soundness_bits / bits)


def random_matrix(seed: bytes, rows: int, cols: int, bits: int) -> npt.NDArray[np.float64]:
    """Entries uniform in [0, 2^bits), expanded from ``seed`` with SHA-256 in counter mode:
    entry i (row-major) is the first ``bits`` bits of SHA-256(DOMAIN || seed || i as 8 bytes
    big-endian) read as a big-endian integer. The same seed gives the same matrix anywhere."""
    if not 0 < bits <= MAX_BITS:
        raise ValueError(f"bits must be in 1..{MAX_BITS}")
    out = np.empty(rows * cols, dtype=np.float64)
    prefix = DOMAIN + seed
    shift = MAX_BITS - bits
    for i in range(rows * cols):
        h = hashlib.sha256(prefix + i.to_bytes(8, "big")).digest()
        out[i] = int.from_bytes(h[:4], "big") >> shift
    return out.reshape(rows, cols)


@dataclass(frozen=True)
class Check:
    ok: bool
    why: str  # "" when ok; "shape", "dtype", "entry_bound" or "mismatch"
    bits: int
    rounds: int

    @property
    def soundness_bits(self) -> int:
        return self.bits * self.rounds


def check(a: npt.NDArray[np.int8], b: npt.NDArray[np.int8], c: npt.NDArray[np.int64],
          seed: bytes, soundness_bits: int = SOUNDNESS_BITS) -> Check:
    """Whether ``c`` is ``a @ b``, with error probability at most 2^-soundness_bits over the
    seed (module docstring)."""
    if a.ndim != 2 or b.ndim != 2 or c.ndim != 2 or a.shape[1] != b.shape[0] or \
            c.shape != (a.shape[0], b.shape[1]):
        return Check(False, "shape", 0, 0)
    if a.dtype != np.int8 or b.dtype != np.int8 or c.dtype != np.int64:
        return Check(False, "dtype", 0, 0)
    k, m = b.shape
    bits = bits_for(max(k, 1), max(m, 1))
    rounds = rounds_for(bits, soundness_bits)
    bound = entry_bound(k)  # c.max() and c.min(): abs() of int64's minimum overflows
    if c.size and (int(c.max()) > bound or int(c.min()) < -bound):
        return Check(False, "entry_bound", bits, rounds)
    r = random_matrix(seed, m, rounds, bits)
    left = a.astype(np.float64) @ (b.astype(np.float64) @ r)
    right = c.astype(np.float64) @ r
    if not np.array_equal(left, right):
        return Check(False, "mismatch", bits, rounds)
    return Check(True, "", bits, rounds)
