"""Receipts: what a requester signs for each result it accepted (spec 06 §5, RCP-1..RCP-3).

    receipt v1, signed by the job's requester:
      net       the network
      job       the job id
      lease     the accepted lease's number
      worker    the worker's Ed25519 key
      output    the accepted output's content id
      price     the lease's price, micro-units
      verified  how the output was checked: "freivalds" (PRF-5) or "structural" (VER-2)
      ts        when it was accepted, ms

A receipt is the input of the reward ledger: it is content-addressed (its envelope's
content id) and self-verifying for its signature. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from p2pnode.jobs.model import MAX_NET_LEN, cid
from p2pnode.wire import envelope
from p2pnode.wire.body import SealedBody
from p2pnode.wire.cid import cid_of
from p2pnode.wire.fields import bstr, map_exact, text, uint
from p2pnode.wire.reasons import Reason, WireError

T_RECEIPT = "receipt"
VERSION = 1
RECEIPT_MAX_SIZE = 512
VERIFIED = ("freivalds", "structural")

envelope.register_type(T_RECEIPT, {VERSION}, RECEIPT_MAX_SIZE)

_KEYS = frozenset({"net", "job", "lease", "worker", "output", "price", "verified", "ts"})


@dataclass(frozen=True, slots=True)
class Receipt(SealedBody):
    T: ClassVar[str] = T_RECEIPT
    V: ClassVar[int] = VERSION
    net: str
    job: bytes
    lease: int
    worker: bytes
    output: bytes
    price: int
    verified: str
    ts: int


@dataclass(frozen=True, slots=True)
class SignedReceipt:
    receipt: Receipt
    requester: bytes
    raw: bytes

    @property
    def id(self) -> bytes:
        return cid_of(self.raw)


def verified_by(kind: str) -> str:
    """What checked an accepted output of ``kind`` (RCP-1)."""
    return "freivalds" if kind == "matmul" else "structural"


def job_output(kind: str, redundancy: int, accepted: list[bytes]) -> tuple[bytes | None, str]:
    """PRF-6: the output a job hands its user, and how it was established, from the
    outputs of its accepted leases (in acceptance order)."""
    if not accepted:
        return None, "none"
    if kind == "matmul":
        return accepted[0], "freivalds"  # each accepted output passed PRF-5
    if redundancy < 2:
        return accepted[0], "structural"
    if len(accepted) >= redundancy and len(set(accepted)) == 1:
        return accepted[0], "agreement"
    return None, "disagreement" if len(set(accepted)) > 1 else "pending"


def open_receipt(data: bytes, *, net: str,
                 verified: envelope.SignatureCache | None = None) -> SignedReceipt:
    """RCP-2: the receipt in ``data``; raises WireError with the reason."""
    env = envelope.open_envelope(data, expected_type=T_RECEIPT, verified=verified)
    m = map_exact(env.body, _KEYS, T_RECEIPT)
    r = Receipt(net=text(m["net"], MAX_NET_LEN, "net", nonempty=True),
                job=cid(m["job"], "job"), lease=uint(m["lease"], "lease"),
                worker=bstr(m["worker"], "worker", size=32),
                output=cid(m["output"], "output"), price=uint(m["price"], "price"),
                verified=text(m["verified"], 16, "verified", nonempty=True),
                ts=uint(m["ts"], "ts"))
    if r.net != net:
        raise WireError(Reason.WRONG_NETWORK, r.net)
    if r.verified not in VERIFIED:
        raise WireError(Reason.BAD_FIELD, "verified must be one of %s" % ", ".join(VERIFIED))
    if r.worker == env.signer:
        raise WireError(Reason.SIGNER_MISMATCH, "a requester cannot pay itself")
    return SignedReceipt(r, env.signer, env.raw)
