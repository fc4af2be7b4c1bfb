"""Ledger elements: credits and slashes, each self-verifying (spec 07 §2, LGR-1..LGR-5).

    Credit = {"receipt": the receipt envelope (spec 06 RCP-2),
              "job":     the job.spec envelope it names}
    Slash  = {"fraud":   a fraud.proof envelope (spec 06 §3)}

An element's id is the content id of its receipt or of its fraud proof, so a credit and
its receipt are one thing however the job bytes travel. A credit pays the receipt's
``price`` to its ``worker``; RCP-3 (the signer is the job's requester) is checked here by
the job envelope's hash and key. Neither the job spec's signature nor its body is read:
the receipt's checked signature covers the job's id, the id the job bytes, and those end
in the key that must be the receipt's signer; nothing else in a credit rests on the job.
A slash is a fraud proof any node can check (FRD-1..FRD-6, FRD-10..FRD-12); it forfeits
what the cheater earns in the epoch it settles in (LGR-9). Pure: the caller passes the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from p2pnode.jobs.model import SPEC_MAX_SIZE, T_SPEC, VERSION
from p2pnode.proofs import fraud
from p2pnode.proofs.receipts import RECEIPT_MAX_SIZE, open_receipt
from p2pnode.wire import cbor, envelope
from p2pnode.wire.cid import CID_PREFIX, cid_of
from p2pnode.wire.fields import bstr
from p2pnode.wire.reasons import Reason, WireError

# LGR-1: one credit carries a receipt and a job spec; one slash, a fraud proof.
MAX_CREDIT_SIZE = RECEIPT_MAX_SIZE + SPEC_MAX_SIZE + 32
MAX_SLASH_SIZE = fraud.MAX_FRAUD_SIZE + 16
MAX_ELEMENT_SIZE = MAX_SLASH_SIZE
# LGR-3: the largest price one receipt may pay: sums of a billion of them fit in 2^64.
MAX_PRICE = (1 << 34) - 1
# LGR-4: how far ahead of the receiver's clock an element's ts may be.
MAX_SKEW_MS = 30_000


class Kind(Enum):
    CREDIT = "credit"
    SLASH = "slash"


@dataclass(frozen=True, slots=True)
class Element:
    """A checked element: what it does to the ledger and the bytes that prove it."""

    id: bytes  # the content id of its receipt or fraud proof (34 bytes)
    kind: Kind
    account: bytes  # credit: the worker paid; slash: the cheater
    payer: bytes  # credit: the requester; slash: the reporter
    amount: int  # credit: the price; slash: 0
    ts: int  # wall ms: the receipt's ts, or the cheater's result's ts
    job: bytes
    raw: bytes  # the element's wire form

    @property
    def key(self) -> bytes:
        """The 32 bytes reconciliation works with (the id without its multihash prefix)."""
        return self.id[len(CID_PREFIX):]


def credit(receipt_raw: bytes, job_raw: bytes) -> bytes:
    """The wire form of a credit."""
    return cbor.encode({"receipt": receipt_raw, "job": job_raw})


def slash(fraud_raw: bytes) -> bytes:
    return cbor.encode({"fraud": fraud_raw})


def open_element(data: bytes, *, net: str, now_ms: int,
                 verified: envelope.SignatureCache | None = None) -> Element:
    """LGR-1..LGR-5: the element in ``data``; raises WireError with the reason."""
    if len(data) > MAX_ELEMENT_SIZE:
        raise WireError(Reason.TOO_LARGE, "%d bytes > %d" % (len(data), MAX_ELEMENT_SIZE))
    m = cbor.decode(bytes(data), max_size=MAX_ELEMENT_SIZE)
    if not isinstance(m, dict) or not m:
        raise WireError(Reason.BAD_FIELD, "an element is a map")
    if set(m) == {"receipt", "job"}:
        if len(data) > MAX_CREDIT_SIZE:
            raise WireError(Reason.TOO_LARGE, "a credit of %d bytes" % len(data))
        el = _credit(bstr(m["receipt"], "receipt", max_len=RECEIPT_MAX_SIZE),
                     bstr(m["job"], "job", max_len=SPEC_MAX_SIZE), net, bytes(data), verified)
    elif set(m) == {"fraud"}:
        el = _slash(bstr(m["fraud"], "fraud", max_len=fraud.MAX_FRAUD_SIZE), net, now_ms,
                    bytes(data), verified)
    else:
        known = {"receipt", "job", "fraud"}
        reason = Reason.UNKNOWN_FIELD if set(m) - known else Reason.BAD_FIELD
        raise WireError(reason, "element fields %s" % sorted(map(str, m)))
    if el.ts > now_ms + MAX_SKEW_MS:  # LGR-4
        raise WireError(Reason.CLOCK_SKEW, "ts %d is ahead of %d" % (el.ts, now_ms))
    return el


def _credit(receipt_raw: bytes, job_raw: bytes, net: str, raw: bytes,
            verified: envelope.SignatureCache | None) -> Element:
    r = open_receipt(receipt_raw, net=net, verified=verified)  # RCP-2
    if cid_of(job_raw) != r.receipt.job:  # LGR-2
        raise WireError(Reason.ID_MISMATCH, "the job bytes are not the receipt's job")
    if envelope.signer_of(job_raw, T_SPEC, VERSION) != r.requester:  # RCP-3
        raise WireError(Reason.SIGNER_MISMATCH, "the receipt's signer is not the job's requester")
    price, ts = r.receipt.price, r.receipt.ts
    if price > MAX_PRICE:  # LGR-3
        raise WireError(Reason.LIMIT_EXCEEDED, "price %d > %d" % (price, MAX_PRICE))
    return Element(id=r.id, kind=Kind.CREDIT, account=r.receipt.worker, payer=r.requester,
                   amount=price, ts=ts, job=r.receipt.job, raw=raw)


def _slash(fraud_raw: bytes, net: str, now_ms: int, raw: bytes,
           verified: envelope.SignatureCache | None) -> Element:
    f = fraud.check(fraud_raw, net=net, now_ms=now_ms, verified=verified, expire=False)  # LGR-5
    return Element(id=cid_of(fraud_raw), kind=Kind.SLASH, account=f.cheater, payer=f.reporter,
                   amount=0, ts=f.ts, job=f.job, raw=raw)
