"""Fraud proofs: self-contained evidence that a worker signed a wrong result (spec 06 §3).

    fraud.proof v1, signed by whoever reports it:
      net      the network
      kind     "matmul.row"
      spec     the job.spec envelope (the requester's signature fixes the inputs' ids)
      result   the job.result envelope the cheater signed (job id, output, row root)
      a, b     the input blobs the spec names
      row      the index of a wrong row
      claimed  that row as the cheater committed it (cols little-endian int64)
      path     its RFC 6962 audit path to the committed root
      ts       when it was reported (informational)

Anyone checks one in O(k * m): the signatures, the ids, the path, and one row of ``a @ b``
(FRD-1 .. FRD-6). A valid proof bars the cheater, the result's signer, from leases until
its result's ``ts`` plus ``BAR_MS`` (FRD-7): a replayed proof can never extend a bar.
Pure: no I/O; the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from p2pnode.identity import Identity
from p2pnode.jobs.model import (
    MAX_CREATED_SKEW_MS,
    MAX_NET_LEN,
    T_RESULT,
    SignedJob,
    check_body,
)
from p2pnode.jobs.tensors import decode_matrix
from p2pnode.proofs import matmul, rows
from p2pnode.proofs.bars import BAR_MS
from p2pnode.wire import envelope
from p2pnode.wire.cid import cid_of
from p2pnode.wire.fields import bstr, hashes, map_exact, text, uint
from p2pnode.wire.reasons import Reason, WireError

T_FRAUD = "fraud.proof"
VERSION = 1
KIND_MATMUL_ROW = "matmul.row"
KINDS = frozenset({KIND_MATMUL_ROW, "wasm.segment"})
# The largest fraud proof: it carries both inputs, so it covers matmul jobs up to about
# n = 360; a larger job's cheater is rejected and excluded by its requester alone (FRD-8).
MAX_FRAUD_SIZE = 512 * 1024
MAX_FRAUD_ELEMENTS = MAX_FRAUD_SIZE  # int8 elements in one input
MAX_OUTPUT_ELEMENTS = 1 << 26  # as VER-2 (MAX_CHECK_ELEMENTS)

envelope.register_type(T_FRAUD, {VERSION}, MAX_FRAUD_SIZE, own_channel=True)

_KEYS = frozenset({"net", "kind", "spec", "result", "a", "b", "row", "claimed", "path", "ts"})


@dataclass(frozen=True, slots=True)
class Fraud:
    """What a valid fraud proof establishes."""

    cheater: bytes  # Ed25519 public key of the result's signer
    job: bytes  # the job id
    until: int  # wall ms: the bar ends (FRD-7)
    reporter: bytes
    ts: int = 0  # the cheater's result's ts, wall ms (the ledger's epoch of a slash)


def build(identity: Identity, net: str, spec_raw: bytes, result_raw: bytes, a_blob: bytes,
          b_blob: bytes, row: int, claimed: bytes, path: Sequence[bytes], ts: int) -> bytes:
    body = {"net": net, "kind": KIND_MATMUL_ROW, "spec": spec_raw, "result": result_raw,
            "a": a_blob, "b": b_blob, "row": row, "claimed": claimed, "path": list(path),
            "ts": ts}
    data = envelope.seal(identity, T_FRAUD, VERSION, body)
    if len(data) > MAX_FRAUD_SIZE:
        raise ValueError(f"a fraud proof of {len(data)} bytes exceeds {MAX_FRAUD_SIZE}")
    return data


def prove(identity: Identity, net: str, spec_raw: bytes, result_raw: bytes,
          inputs: dict[str, bytes | None], output: bytes, row: int, ts: int) -> bytes | None:
    """A fraud proof that row ``row`` of ``output`` (the blob the result names) is wrong;
    None when it would exceed MAX_FRAUD_SIZE (FRD-8)."""
    a_blob, b_blob = inputs.get("a"), inputs.get("b")
    if a_blob is None or b_blob is None:
        return None
    if len(a_blob) + len(b_blob) + len(spec_raw) + len(result_raw) > MAX_FRAUD_SIZE:
        return None
    c = decode_matrix(output, MAX_OUTPUT_ELEMENTS)
    leaves = matmul.leaves(c)
    try:
        return build(identity, net, spec_raw, result_raw, a_blob, b_blob, row,
                     matmul.row_bytes(c, row), rows.path(leaves, row), ts)
    except ValueError:
        return None


def _bad(detail: str) -> WireError:
    return WireError(Reason.BAD_PROOF, detail)


def check(data: bytes, *, net: str, now_ms: int,
          verified: envelope.SignatureCache | None = None, expire: bool = True) -> Fraud:
    """FRD-1 .. FRD-6 (``matmul.row``) or FRD-10 .. FRD-12 (``wasm.segment``): the fraud a
    proof establishes; raises WireError with the reason. ``expire=False`` (the ledger's
    slashes, spec 07) keeps a proof valid after the bar it sets is over."""
    from p2pnode.proofs import segment

    env = envelope.open_envelope(data, expected_type=T_FRAUD, verified=verified)  # FRD-1
    kind = env.body.get("kind") if isinstance(env.body, dict) else None
    m = map_exact(env.body, segment.KEYS if kind == segment.KIND_WASM_SEGMENT else _KEYS,
                  T_FRAUD)
    if text(m["net"], MAX_NET_LEN, "net", nonempty=True) != net:
        raise WireError(Reason.WRONG_NETWORK, str(m["net"]))
    if text(m["kind"], 32, "kind", nonempty=True) not in KINDS:
        raise WireError(Reason.UNKNOWN_TYPE, "fraud proof kind %s" % m["kind"])
    # FRD-2: the job and the cheater's signed result for it.
    job = SignedJob.open(bstr(m["spec"], "spec"), verified=verified)
    res = envelope.open_envelope(bstr(m["result"], "result"), expected_type=T_RESULT,
                                 verified=verified)
    body = check_body(T_RESULT, res.body)
    if body["job"] != job.id:
        raise WireError(Reason.ID_MISMATCH, "the result is for another job")
    if body["net"] != net or job.spec.net != net:
        raise WireError(Reason.WRONG_NETWORK, str(body["net"]))
    root, chain = None, None
    if kind == segment.KIND_WASM_SEGMENT:
        from p2pnode.proofs.bisect import committed_chain

        if job.spec.kind != "wasm":
            raise _bad("not a wasm job")
        chain = committed_chain(body["proof"])
        if chain is None:
            raise _bad("the result commits to no checkpoint chain")
    else:
        if job.spec.kind != "matmul":
            raise _bad("not a matmul job")
        root = matmul.committed_root(body["proof"])
        if root is None:
            raise _bad("the result commits to no row root")
    # FRD-3 (time, checked before the arithmetic): the bar runs from the result's ts.
    ts = int(body["ts"])
    if ts > now_ms + MAX_CREATED_SKEW_MS:
        raise WireError(Reason.CLOCK_SKEW, "the result is from the future")
    until = ts + BAR_MS
    if expire and until <= now_ms:
        raise WireError(Reason.EXPIRED, "the bar it would set is over")
    if chain is not None:
        segment.check(m, job, chain)  # FRD-10 .. FRD-12
    else:
        assert root is not None
        _check_row(m, job, root)  # FRD-4 .. FRD-6
    return Fraud(cheater=res.signer, job=job.id, until=until, reporter=env.signer, ts=ts)


def _check_row(m: dict[str, Any], job: SignedJob, root: bytes) -> None:
    # FRD-4: the inputs are the job's.
    inputs = dict(job.spec.inputs)
    a_blob, b_blob = bstr(m["a"], "a"), bstr(m["b"], "b")
    if "a" not in inputs or "b" not in inputs:
        raise _bad("the job names no inputs a and b")
    if cid_of(a_blob) != inputs["a"] or cid_of(b_blob) != inputs["b"]:
        raise WireError(Reason.HASH_MISMATCH, "the inputs are not the job's")
    a = decode_matrix(a_blob, MAX_FRAUD_ELEMENTS)
    b = decode_matrix(b_blob, MAX_FRAUD_ELEMENTS)
    if a.dtype != np.int8 or b.dtype != np.int8 or a.shape[1] != b.shape[0]:
        raise _bad("the inputs are not an int8 product")
    # FRD-5: the claimed row is committed under the root, at its index, in a tree of
    # a.rows leaves (the output's shape fixes the tree's size).
    i = uint(m["row"], "row")
    claimed = bstr(m["claimed"], "claimed")
    path = hashes(m["path"], rows.MAX_PATH, "path")
    if i >= a.shape[0] or len(claimed) != b.shape[1] * 8:
        raise _bad("no such row")
    if not rows.verify_path(rows.leaf_hash(claimed), i, a.shape[0], path, root):
        raise _bad("the row is not the committed one")
    # FRD-6: and it is wrong.
    if np.array_equal(np.frombuffer(claimed, dtype="<i8"), matmul.true_row(a, b, i)):
        raise _bad("the row is right")


def describe(fraud: Fraud) -> dict[str, Any]:
    return {"cheater": fraud.cheater.hex(), "job": fraud.job.hex(), "until": fraud.until,
            "reporter": fraud.reporter.hex()}
