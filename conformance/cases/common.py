"""Fixed keys, clock and sample messages shared by the case generators.

Everything is derived from constants, and Ed25519 signatures are deterministic, so the
vectors are the same bytes on every run.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from p2pnode.caps.model import AD_TYPE, AD_VERSION, CapabilityAd, Gpu
from p2pnode.identity import Identity, peer_id_bytes
from p2pnode.wire import cbor, envelope

NOW_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z, the receiver's clock in every vector
NET = "devnet"


def key(label: str) -> Identity:
    """A fixed test key: seed = SHA-256("p2pnode conformance key " + label)."""
    return Identity(hashlib.sha256(b"p2pnode conformance key " + label.encode()).digest())


ALICE = key("alice")
BOB = key("bob")
CAROL = key("carol")


def source_of(ident: Identity) -> str:
    """The hex binary PeerID of ``ident``, as a pubsub message's ``from``."""
    return peer_id_bytes(ident.public_key).hex()


BASE_AD = CapabilityAd(
    net=NET,
    seq=7,
    ts=NOW_MS,
    ttl=180,
    cores=8,
    threads=16,
    arch="x86_64",
    mem=32 << 30,
    gpus=(),
    kinds=("matmul", "wasm"),
    price=(("matmul", 1000), ("wasm", 1000)),
    addrs=("/ip4/192.0.2.1/tcp/4001",),
    agent="p2pnode-py/0.1.0",
)

H100 = Gpu(name="NVIDIA H100 80GB HBM3", mem=85_520_809_984)


def ad(**changes: Any) -> CapabilityAd:
    return dataclasses.replace(BASE_AD, **changes)


def edited(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with top-level fields replaced (``None`` deletes a field)."""
    b = dict(base)
    for k, v in changes.items():
        if v is None:
            del b[k]
        else:
            b[k] = v
    return b


def body(**changes: Any) -> dict[str, Any]:
    """The body of BASE_AD with top-level fields replaced (``None`` deletes a field)."""
    return edited(BASE_AD.to_body(), changes)


def seal(body_value: Any, signer: Identity = ALICE, t: str = AD_TYPE,
         v: int = AD_VERSION) -> bytes:
    return envelope.seal(signer, t, v, body_value)


def assemble(body_bytes: bytes, *, k: bytes, s: bytes, t: str = AD_TYPE,
             v: int = AD_VERSION) -> bytes:
    """An envelope around already-encoded body bytes (which may break the profile), with its
    fields in canonical order b, k, s, t, v."""
    enc = cbor.encode
    return (b"\xa5" + enc("b") + body_bytes + enc("k") + enc(k) + enc("s") + enc(s)
            + enc("t") + enc(t) + enc("v") + enc(v))


def sign_bytes(signer: Identity, body_bytes: bytes, t: str = AD_TYPE,
               v: int = AD_VERSION) -> bytes:
    """A signature over the signing input of ``body_bytes`` taken as they are."""
    return signer.sign(envelope.signing_input(t, v, body_bytes))
