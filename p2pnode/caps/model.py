"""Capability advertisements (spec/02-capabilities.md).

A ``CapabilityAd`` is what one node says about itself on ``/p2pnode/<net>/caps/1``: its
hardware, the job kinds it runs and its prices, under a sequence number that only grows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from p2pnode.identity import Identity
from p2pnode.wire import envelope
from p2pnode.wire.fields import _list, _map, _text, _uint
from p2pnode.wire.reasons import Reason, WireError

AD_TYPE = "caps.ad"
AD_VERSION = 1
AD_MAX_SIZE = 4096
envelope.register_type(AD_TYPE, {AD_VERSION}, AD_MAX_SIZE)

MAX_NET_LEN = 32
MAX_GPUS = 16
MAX_KINDS = 16
MAX_KIND_LEN = 32
MAX_ADDRS = 8
MAX_ADDR_LEN = 128
MAX_AGENT_LEN = 64
MAX_NAME_LEN = 64
MIN_TTL_S = 10
MAX_TTL_S = 86_400

_AD_KEYS = frozenset({"net", "seq", "ts", "ttl", "cpu", "mem", "gpus", "kinds", "price", "addrs",
                      "agent"})
_CPU_KEYS = frozenset({"cores", "threads", "arch"})
_GPU_KEYS = frozenset({"name", "mem"})


@dataclass(frozen=True, slots=True)
class Gpu:
    name: str
    mem: int  # bytes


@dataclass(frozen=True, slots=True)
class CapabilityAd:
    """Body of a ``caps.ad`` v1 envelope (spec 02 §2)."""

    net: str
    seq: int
    ts: int  # milliseconds since the Unix epoch
    ttl: int  # seconds
    cores: int
    threads: int
    arch: str
    mem: int  # bytes of RAM
    gpus: tuple[Gpu, ...] = ()
    kinds: tuple[str, ...] = ()
    price: tuple[tuple[str, int], ...] = ()  # (kind, price in micro-units per job unit)
    addrs: tuple[str, ...] = ()
    agent: str = ""
    # Filled in when decoded from an envelope; not part of the body.
    signer: bytes = field(default=b"", compare=False)

    def to_body(self) -> dict[str, Any]:
        return {
            "net": self.net,
            "seq": self.seq,
            "ts": self.ts,
            "ttl": self.ttl,
            "cpu": {"cores": self.cores, "threads": self.threads, "arch": self.arch},
            "mem": self.mem,
            "gpus": [{"name": g.name, "mem": g.mem} for g in self.gpus],
            "kinds": list(self.kinds),
            "price": dict(self.price),
            "addrs": list(self.addrs),
            "agent": self.agent,
        }

    def encode(self, identity: Identity) -> bytes:
        """Seal as a signed envelope."""
        return envelope.seal(identity, AD_TYPE, AD_VERSION, self.to_body())

    @classmethod
    def from_body(cls, body: Any, signer: bytes = b"") -> CapabilityAd:
        """Check the body against spec 02 §2 and build the ad; raise WireError otherwise."""
        m = _map(body, _AD_KEYS, "ad")
        cpu = _map(m["cpu"], _CPU_KEYS, "cpu")
        gpus_raw = _list(m["gpus"], MAX_GPUS, "gpus")
        gpus = tuple(
            Gpu(name=_text(g["name"], MAX_NAME_LEN, "gpu.name"), mem=_uint(g["mem"], "gpu.mem"))
            for g in (_map(x, _GPU_KEYS, "gpu") for x in gpus_raw)
        )
        kinds = tuple(_text(k, MAX_KIND_LEN, "kind", nonempty=True)
                      for k in _list(m["kinds"], MAX_KINDS, "kinds"))
        if len(set(kinds)) != len(kinds):
            raise WireError(Reason.BAD_FIELD, "kinds repeat")
        price_raw = m["price"]
        if not isinstance(price_raw, dict) or len(price_raw) > MAX_KINDS:
            raise WireError(Reason.BAD_FIELD, "price must be a map of at most %d" % MAX_KINDS)
        price = tuple(sorted(
            (_text(k, MAX_KIND_LEN, "price kind", nonempty=True), _uint(v, "price"))
            for k, v in price_raw.items()
        ))
        addrs = tuple(_text(a, MAX_ADDR_LEN, "addr", nonempty=True)
                      for a in _list(m["addrs"], MAX_ADDRS, "addrs"))
        ttl = _uint(m["ttl"], "ttl")
        if not MIN_TTL_S <= ttl <= MAX_TTL_S:
            raise WireError(Reason.BAD_FIELD, "ttl out of [%d, %d]" % (MIN_TTL_S, MAX_TTL_S))
        return cls(
            net=_text(m["net"], MAX_NET_LEN, "net", nonempty=True),
            seq=_uint(m["seq"], "seq"),
            ts=_uint(m["ts"], "ts"),
            ttl=ttl,
            cores=_uint(cpu["cores"], "cpu.cores"),
            threads=_uint(cpu["threads"], "cpu.threads"),
            arch=_text(cpu["arch"], MAX_NAME_LEN, "cpu.arch"),
            mem=_uint(m["mem"], "mem"),
            gpus=gpus,
            kinds=kinds,
            price=price,
            addrs=addrs,
            agent=_text(m["agent"], MAX_AGENT_LEN, "agent"),
            signer=signer,
        )

    @property
    def gpu_mem(self) -> int:
        return max((g.mem for g in self.gpus), default=0)

    def expires_at_ms(self) -> int:
        return self.ts + self.ttl * 1000
