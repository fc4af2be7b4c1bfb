"""Checking a returned output against its job (spec/04-jobs.md §6).

This version checks what the job kind makes checkable without recomputing: the output must
decode as the kind's output type with the shape the inputs imply. Cryptographic checks
(Freivalds for matmul, checkpoint chains for wasm) plug in here with the proofs chapter.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pnode.jobs.model import JobSpec
from p2pnode.wire.reasons import Reason, WireError

MAX_CHECK_ELEMENTS = 1 << 26


def check_output(spec: JobSpec, inputs: dict[str, bytes | None], output: bytes) -> Reason | None:
    """None when ``output`` is acceptable for ``spec``, else the reason it is not (VER-2)."""
    if spec.kind == "matmul":
        # numpy is imported on the first check, not at start-up: a node's start is mostly
        # imports, and numpy is 10-15 % of them (bench/README.md, bench_testnet).
        from p2pnode.jobs.tensors import decode_matrix

        a_raw, b_raw = inputs.get("a"), inputs.get("b")
        if a_raw is None or b_raw is None:
            return Reason.NOT_FOUND
        try:
            a = decode_matrix(a_raw, MAX_CHECK_ELEMENTS)
            b = decode_matrix(b_raw, MAX_CHECK_ELEMENTS)
            c = decode_matrix(output, MAX_CHECK_ELEMENTS)
        except WireError as e:
            return e.reason
        if str(c.dtype) != "int64" or c.shape != (a.shape[0], b.shape[1]):
            return Reason.BAD_FIELD
        return None
    if spec.kind == "wasm":
        return None
    return Reason.UNKNOWN_TYPE


@dataclass(frozen=True, slots=True)
class Outcome:
    """A judged result (VER-2, then PRF-5): ``reason`` None when accepted; ``row`` a wrong
    row under the worker's commitment, the material of a fraud proof (FRD)."""

    reason: Reason | None
    row: int | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def judge_output(spec: JobSpec, inputs: dict[str, bytes | None], output: bytes,
                 commit: bytes, seed: bytes) -> Outcome:
    """VER-2's structural check, then the kind's proof (spec 06): for ``matmul``,
    Freivalds' check with randomness from ``seed`` (PRF-3, drawn after ``commit``)."""
    why = check_output(spec, inputs, output)
    if why is not None:
        return Outcome(why)
    if spec.kind == "wasm" and spec.param("checkpoint_fuel") is not None:
        # A step job (spec 06 WSM-5): its result must commit to its checkpoint chain.
        return Outcome(None if len(commit) == 32 else Reason.BAD_PROOF)
    if spec.kind != "matmul":
        return Outcome(None)
    from p2pnode.jobs.tensors import decode_matrix
    from p2pnode.proofs import matmul

    a_raw, b_raw = inputs["a"], inputs["b"]
    assert a_raw is not None and b_raw is not None  # check_output saw them
    a = decode_matrix(a_raw, MAX_CHECK_ELEMENTS)
    b = decode_matrix(b_raw, MAX_CHECK_ELEMENTS)
    c = decode_matrix(output, MAX_CHECK_ELEMENTS)
    root = commit if len(commit) == 32 else None
    j = matmul.judge(a, b, c, root, seed, matmul.soundness_bits(dict(spec.verify)))
    return Outcome(j.reason, j.row)


# -- fetching the output before it is judged (VER-1) ----------------------------------------

FETCH_ATTEMPTS = 3
# A retried fetch waits this long first: an outage of a second or a restarting worker is
# not enough to reject it.
FETCH_RETRY_MS = 2_000
# What the worker provably did wrong: the output is judged at once, without a retry.
WORKER_FAULTS = frozenset({Reason.HASH_MISMATCH, Reason.TOO_LARGE, Reason.BAD_FIELD,
                           Reason.UNKNOWN_FIELD})


class FetchAttempts:
    """VER-1 as a value: what to do after each failed fetch of an output.

    ``on_failure`` answers ``"reject"`` (judge now, with the reason), ``"retry"`` (over a
    fresh connection; at most ``FETCH_ATTEMPTS`` fetches in all) or ``"wait"`` (the
    worker's blob server is busy serving others: wait and fetch again, not counted and
    never held against the worker; the verification deadline, LEASE-12, bounds it).
    """

    def __init__(self) -> None:
        self.failures = 0
        self.last = Reason.NOT_FOUND

    def on_failure(self, reason: Reason) -> tuple[str, Reason]:
        if reason in WORKER_FAULTS:
            return "reject", reason
        if reason is Reason.BUSY:
            return "wait", reason
        self.failures += 1
        self.last = reason
        if self.failures >= FETCH_ATTEMPTS:
            return "reject", reason
        return "retry", reason
