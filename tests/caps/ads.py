"""Capability ads for tests: one realistic ad and ways to bend it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from p2pnode.caps.model import AD_TYPE, AD_VERSION, CapabilityAd, Gpu
from p2pnode.identity import Identity
from p2pnode.wire import envelope

NET = "testnet"
NOW_MS = 1_700_000_000_000  # a fixed "now" for the pure validators

AD = CapabilityAd(
    net=NET,
    seq=7,
    ts=NOW_MS,
    ttl=180,
    cores=8,
    threads=16,
    arch="x86_64",
    mem=64 << 30,
    gpus=(Gpu(name="NVIDIA H100 80GB HBM3", mem=80 << 30),),
    kinds=("matmul", "wasm"),
    price=(("matmul", 1000), ("wasm", 250)),
    addrs=("/ip4/10.0.0.7/tcp/4001", "/ip6/::1/tcp/4001"),
    agent="p2pnode-py/0.1.0",
)


def make_ad(**changes: Any) -> CapabilityAd:
    return replace(AD, **changes)


def sealed(identity: Identity, ad: CapabilityAd | None = None) -> bytes:
    return (ad or AD).encode(identity)


def sealed_body(identity: Identity, body: Any) -> bytes:
    """Seal any body as a caps.ad envelope: the signature is valid, the body may not be."""
    return envelope.seal(identity, AD_TYPE, AD_VERSION, body)
