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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

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
    block j is SHA-256(DOMAIN || seed || j as 8 bytes big-endian), eight 4-byte words; entry
    i (row-major) is the first ``bits`` bits of word i mod 8 of block i div 8, read as a
    big-endian integer. The same seed gives the same matrix anywhere."""
    if not 0 < bits <= MAX_BITS:
        raise ValueError(f"bits must be in 1..{MAX_BITS}")
    count = rows * cols
    prefix = DOMAIN + seed
    stream = b"".join(hashlib.sha256(prefix + j.to_bytes(8, "big")).digest()
                      for j in range((count + 7) // 8))
    words = np.frombuffer(stream, dtype=">u4", count=count) >> np.uint32(MAX_BITS - bits)
    return words.astype(np.float64).reshape(rows, cols)


# Rows converted to float64 at a time: a block (8 MiB of an int64 matrix at n = 2048) stays
# in the last-level cache between its conversion and its products, instead of a float64
# copy of the whole matrix going through memory. 40 ms -> 10 ms at n = 2048 with the gemv
# below; 64 rows took 12 ms and the whole matrix 29 ms.
BLOCK_ROWS = 512


_CONTROLLER: Any = None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """The check's matrix-vector products on one BLAS thread. They are bound by memory, not
    arithmetic: two threads gained 1 ms of 12 at n = 2048 on a quiet host, and on a shared
    host that takes a core away now and then, threads waiting for each other made the same
    check take 36-47 ms instead of 12-15."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

        _CONTROLLER = ThreadpoolController()
    with _CONTROLLER.limit(limits=1, user_api="blas"):
        yield


def _times_within(x: npt.NDArray[np.int8] | npt.NDArray[np.int64],
                  r: npt.NDArray[np.float64],
                  bound: int | None) -> npt.NDArray[np.float64] | None:
    """``x @ r`` in float64, converting ``x`` a block of rows at a time; None when ``bound``
    is given and an entry of ``x`` exceeds it in magnitude (checked on the block in cache).
    One matrix-vector product per column of ``r``: OpenBLAS's gemv is about three times as
    fast as its gemm with three columns."""
    cols = np.ascontiguousarray(r.T)
    out = np.empty((r.shape[1], x.shape[0]), dtype=np.float64)
    block = np.empty((min(BLOCK_ROWS, x.shape[0]), x.shape[1]), dtype=np.float64)
    for i in range(0, x.shape[0], BLOCK_ROWS):
        part = x[i:i + BLOCK_ROWS]
        view = block[:part.shape[0]]
        view[...] = part
        if bound is not None and (view.max() > bound or view.min() < -bound):
            return None
        for j in range(cols.shape[0]):
            np.dot(view, cols[j], out=out[j, i:i + part.shape[0]])
    return out.T


def _times(x: npt.NDArray[np.int8] | npt.NDArray[np.int64],
           r: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out = _times_within(x, r, None)
    assert out is not None
    return out


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
    r = random_matrix(seed, m, rounds, bits)
    with one_blas_thread():
        # The bound is checked on c's float64 blocks: int64 entries beyond 2^53 may round,
        # but only to values still beyond the bound, which is far below 2^53.
        right = _times_within(c, r, entry_bound(k))
        if right is None:
            return Check(False, "entry_bound", bits, rounds)
        same = np.array_equal(_times(a, _times(b, r)), right)
    if not same:
        return Check(False, "mismatch", bits, rounds)
    return Check(True, "", bits, rounds)


def wrong_rows(a: npt.NDArray[np.int8], b: npt.NDArray[np.int8], c: npt.NDArray[np.int64],
               seed: bytes, soundness_bits: int = SOUNDNESS_BITS) -> list[int]:
    """Rows of ``c`` that are certainly wrong: those where ``a @ (b @ r)`` and ``c @ r``
    differ (a row equal to the true one agrees for every r), or, when some entries exceed
    the entry bound, the rows holding them (refused without arithmetic, as :func:`check`
    does). Empty when ``c`` passes. Shapes and dtypes as :func:`check` accepts them."""
    k, m = b.shape
    bits = bits_for(max(k, 1), max(m, 1))
    r = random_matrix(seed, m, rounds_for(bits, soundness_bits), bits)
    bound = entry_bound(k)
    over = np.flatnonzero(np.any(c > bound, axis=1) | np.any(c < -bound, axis=1))
    if over.size:
        return [int(i) for i in over]
    with one_blas_thread():
        diff = np.any(_times(a, _times(b, r)) != _times(c, r), axis=1)
    return [int(i) for i in np.flatnonzero(diff)]
