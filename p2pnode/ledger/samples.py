"""Well-formed credits for benchmarks, tests and conformance vectors: a job spec and its
receipt, both signed by the requester, from fixed inputs (deterministic: Ed25519
signatures are)."""

from __future__ import annotations

import hashlib

from p2pnode.identity import Identity
from p2pnode.jobs.model import NONCE_SIZE, JobSpec, Requirements
from p2pnode.ledger import elements
from p2pnode.proofs.receipts import Receipt
from p2pnode.wire.cid import cid_of


def job(requester: Identity, net: str, created: int, nonce: int, max_price: int = 10_000
        ) -> bytes:
    spec = JobSpec(net=net, kind="wasm", inputs=(), params=(), req=Requirements(),
                   max_price=max_price, created=created, deadline=created + 600_000,
                   lease_s=30, redundancy=1,
                   nonce=hashlib.sha256(b"nonce%d" % nonce).digest()[:NONCE_SIZE])
    return spec.seal(requester)


def receipt(requester: Identity, net: str, job_raw: bytes, worker: bytes, price: int,
            ts: int, lease: int = 1) -> bytes:
    return Receipt(net=net, job=cid_of(job_raw), lease=lease, worker=worker,
                   output=cid_of(b"output%d" % ts), price=price, verified="structural",
                   ts=ts).seal(requester)


def credit(requester: Identity, net: str, worker: bytes, price: int, ts: int, nonce: int
           ) -> bytes:
    """A credit element paying ``price`` to ``worker`` for a fresh job created at ``ts``."""
    j = job(requester, net, ts, nonce)
    return elements.credit(receipt(requester, net, j, worker, price, ts), j)


def identity(name: str) -> Identity:
    return Identity(hashlib.sha256(b"p2pnode ledger sample " + name.encode()).digest())
