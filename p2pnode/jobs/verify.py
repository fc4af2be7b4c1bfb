"""Checking a returned output against its job (spec/04-jobs.md §6).

This version checks what the job kind makes checkable without recomputing: the output must
decode as the kind's output type with the shape the inputs imply. Cryptographic checks
(Freivalds for matmul, checkpoint chains for wasm) plug in here with the proofs chapter.
"""

from __future__ import annotations

from p2pnode.jobs.model import JobSpec
from p2pnode.jobs.tensors import decode_matrix
from p2pnode.wire.reasons import Reason, WireError

MAX_CHECK_ELEMENTS = 1 << 26


def check_output(spec: JobSpec, inputs: dict[str, bytes | None], output: bytes) -> Reason | None:
    """None when ``output`` is acceptable for ``spec``, else the reason it is not (VER-2)."""
    if spec.kind == "matmul":
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
