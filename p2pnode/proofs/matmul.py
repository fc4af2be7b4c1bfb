"""Judging a matmul result: commitment, randomness, Freivalds, the wrong row (spec 06 §2).

The worker's signed ``job.result`` names the output's content id and, in ``proof``, the
root of its rows (:mod:`p2pnode.proofs.rows`). Both are fixed before the verifier draws
its randomness, which it derives from a secret of its own and the committed values
(PRF-3): the worker can neither predict it nor change what it committed to. Pure.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from p2pnode.proofs import freivalds, rows
from p2pnode.wire.reasons import Reason

ROWS_KEY = rows.ROWS_KEY
committed_root = rows.committed_root
SEED_DOMAIN = b"p2pnode/verify-seed/1\x00"
SECRET_DOMAIN = b"p2pnode/verifier-secret/1\x00"
# job.spec `verify` key: the soundness the requester asks for, in bits (PRF-4).
VERIFY_BITS_KEY = "bits"
MIN_VERIFY_BITS = 40
MAX_VERIFY_BITS = 128


def row_bytes(c: npt.NDArray[np.int64], i: int) -> bytes:
    """Row ``i`` as the matrix blob stores it: ``cols`` little-endian int64 (spec 04 §7.2)."""
    return np.ascontiguousarray(c[i], dtype="<i8").tobytes()


# From this many elements the rows are hashed in two threads (hashlib lets go of the GIL
# for buffers over 2 KiB): 30 -> 16 ms at n = 2048 on two cores.
PARALLEL_ELEMENTS = 1 << 18


def _leaf_hashes(le: npt.NDArray[np.int64], lo: int, hi: int) -> list[bytes]:
    out = []
    for i in range(lo, hi):
        h = hashlib.sha256(rows.LEAF)
        h.update(le[i])
        out.append(h.digest())
    return out


def leaves(c: npt.NDArray[np.int64]) -> list[bytes]:
    """The leaf hashes of ``c``'s rows (PRF-1)."""
    le = np.ascontiguousarray(c, dtype="<i8")
    n = le.shape[0]
    if le.size < PARALLEL_ELEMENTS or n < 2:
        return _leaf_hashes(le, 0, n)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(_leaf_hashes, le, 0, n // 2)
        second = _leaf_hashes(le, n // 2, n)  # meanwhile, here
        return first.result() + second


def rows_root(c: npt.NDArray[np.int64]) -> bytes:
    return rows.root_of_leaves(leaves(c))


def commitment(c: npt.NDArray[np.int64]) -> dict[str, bytes]:
    """The ``proof`` map of a matmul ``job.result`` (PRF-1)."""
    return {ROWS_KEY: rows_root(c)}


def verifier_secret(key_seed: bytes) -> bytes:
    """A verifier's secret, derived from its identity's private seed (PRF-3): never sent."""
    return hashlib.sha256(SECRET_DOMAIN + key_seed).digest()


def draw_seed(secret: bytes, job: bytes, lease: int, output: bytes, root: bytes) -> bytes:
    """PRF-3: the seed of the verifier's random matrix, drawn after the commitment."""
    return hashlib.sha256(SEED_DOMAIN + secret + job + lease.to_bytes(8, "big") + output
                          + root).digest()


def soundness_bits(verify: dict[str, Any]) -> int:
    """PRF-4: the job's ``verify.bits``, at least MIN_VERIFY_BITS (the default)."""
    bits = verify.get(VERIFY_BITS_KEY, MIN_VERIFY_BITS)
    if isinstance(bits, bool) or not isinstance(bits, int):
        return MIN_VERIFY_BITS
    return max(MIN_VERIFY_BITS, min(MAX_VERIFY_BITS, bits))


@dataclass(frozen=True, slots=True)
class Judgement:
    """The outcome of PRF-5: ``reason`` None when accepted; ``row`` a wrong row committed
    under the worker's root (the material of a fraud proof), when there is one."""

    reason: Reason | None
    row: int | None = None
    soundness_bits: int = 0

    @property
    def ok(self) -> bool:
        return self.reason is None


def judge(a: npt.NDArray[np.int8], b: npt.NDArray[np.int8], c: npt.NDArray[np.int64],
          root: bytes | None, seed: bytes, bits: int = MIN_VERIFY_BITS) -> Judgement:
    """PRF-5: accept ``c`` as ``a @ b`` or say why not, and find the evidence."""
    if root is None:
        return Judgement(Reason.BAD_PROOF)
    chk = freivalds.check(a, b, c, seed, bits)
    if chk.ok:
        return Judgement(None, soundness_bits=chk.soundness_bits)
    if chk.why in ("shape", "dtype"):
        return Judgement(Reason.BAD_FIELD)
    if rows_root(c) != root:  # the rows it sent are not those it committed to
        return Judgement(Reason.BAD_PROOF, soundness_bits=chk.soundness_bits)
    wrong = freivalds.wrong_rows(a, b, c, seed, bits)
    return Judgement(Reason.WRONG_RESULT, row=wrong[0] if wrong else None,
                     soundness_bits=chk.soundness_bits)


def true_row(a: npt.NDArray[np.int8], b: npt.NDArray[np.int8], i: int) -> npt.NDArray[np.int64]:
    """Row ``i`` of ``a @ b``, exactly, in O(k * m): what a fraud proof's checker computes."""
    return np.asarray(a[i].astype(np.int64) @ b.astype(np.int64), dtype=np.int64)
