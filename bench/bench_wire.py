"""Wire benchmark: p2pnode's codec and envelope against their baselines, in one run.

    python -m bench.bench_wire [--iterations N] [--sig-iterations N] [--repeats R] [--json]

Four operations on a realistic CapabilityAd, each timed for p2pnode and for a named baseline
doing the same work on the same bytes:

    encode   p2pnode.wire.cbor.encode          vs cbor2.dumps(canonical=True)
    decode   p2pnode.wire.cbor.decode          vs cbor2.loads
    seal     p2pnode.wire.envelope.seal        vs PyNaCl SigningKey.sign (signing input only)
    open     p2pnode.wire.envelope.open_envelope vs PyNaCl VerifyKey.verify (same signature)

Each figure is the best of ``--repeats`` timed loops; the loops of the two sides alternate,
so a burst of load elsewhere on the machine falls on both. The ratio is ours / baseline in
ops/s (above 1: we are faster). Before timing, the baseline's output is checked to equal
ours, so both sides provably do the same work.

``encode`` and ``decode`` run on cbor2's native codec with a proof that the result is the
canonical one (p2pnode/wire/cbor.py); the pure-Python reference codec, which decides
whenever that proof does not hold, is timed too and reported as ``reference``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import cbor2
import nacl.signing

from p2pnode.caps.model import AD_TYPE, AD_VERSION, CapabilityAd, Gpu
from p2pnode.identity import Identity
from p2pnode.wire import cbor
from p2pnode.wire.envelope import open_envelope, seal, signing_input


@dataclass
class Result:
    op: str
    ours: str
    ours_ops_s: float
    baseline: str
    baseline_ops_s: float
    ratio: float  # ours / baseline


def realistic_ad() -> CapabilityAd:
    """An ad as a two-GPU worker would send it."""
    return CapabilityAd(
        net="devnet",
        seq=1_234,
        ts=1_700_000_000_000,
        ttl=180,
        cores=32,
        threads=64,
        arch="x86_64",
        mem=512 << 30,
        gpus=(Gpu(name="NVIDIA H100 80GB HBM3", mem=80 << 30),
              Gpu(name="NVIDIA H100 80GB HBM3", mem=80 << 30)),
        kinds=("matmul", "wasm"),
        price=(("matmul", 1_000), ("wasm", 250)),
        addrs=("/ip4/203.0.113.7/tcp/4001", "/ip6/2001:db8::7/tcp/4001"),
        agent="p2pnode-py/0.1.0",
    )


def ops_per_s(fns: list[Callable[[], Any]], iterations: int, repeats: int) -> list[float]:
    """ops/s of each function, best of ``repeats`` loops, the loops of all taken in turn."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(iterations):
                fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return [iterations / max(b, 1e-9) for b in best]


def run(iterations: int, sig_iterations: int, repeats: int) -> dict[str, Any]:
    identity = Identity(bytes(range(32)))
    body = realistic_ad().to_body()
    body_bytes = cbor.encode(body)
    env = seal(identity, AD_TYPE, AD_VERSION, body)
    msg = signing_input(AD_TYPE, AD_VERSION, body_bytes)
    sk = nacl.signing.SigningKey(identity.seed)
    vk = sk.verify_key
    sig = open_envelope(env, AD_TYPE).sig

    # Same work on both sides, or the comparison means nothing.
    assert cbor2.dumps(body, canonical=True) == body_bytes
    assert cbor2.loads(body_bytes) == body == cbor.decode(body_bytes)
    # ... and ours is the fast path, not the reference it falls back to.
    assert cbor.fast_encode(body) == cbor.reference_encode(body) == body_bytes
    assert cbor.fast_decode(body_bytes) is not cbor.REFUSED
    assert sk.sign(msg).signature == sig
    vk.verify(msg, sig)

    cases: list[tuple[str, str, Callable[[], Any], str, Callable[[], Any], int]] = [
        ("encode", "cbor.encode", lambda: cbor.encode(body),
         "cbor2.dumps(canonical=True)", lambda: cbor2.dumps(body, canonical=True), iterations),
        ("decode", "cbor.decode", lambda: cbor.decode(body_bytes),
         "cbor2.loads", lambda: cbor2.loads(body_bytes), iterations),
        ("seal", "envelope.seal", lambda: seal(identity, AD_TYPE, AD_VERSION, body),
         "nacl SigningKey.sign", lambda: sk.sign(msg), sig_iterations),
        ("open", "envelope.open_envelope", lambda: open_envelope(env, AD_TYPE),
         "nacl VerifyKey.verify", lambda: vk.verify(msg, sig), sig_iterations),
    ]
    references: dict[str, Callable[[], Any]] = {
        "encode": lambda: cbor.reference_encode(body),
        "decode": lambda: cbor.reference_decode(body_bytes),
    }
    results = []
    reference = []
    for op, ours_name, ours, base_name, base, n in cases:
        timed = [ours, base] + ([references[op]] if op in references else [])
        rates = ops_per_s(timed, n, repeats)
        ours_rate, base_rate = rates[0], rates[1]
        results.append(Result(op=op, ours=ours_name, ours_ops_s=round(ours_rate, 1),
                              baseline=base_name, baseline_ops_s=round(base_rate, 1),
                              ratio=round(ours_rate / base_rate, 3)))
        if op in references:
            reference.append({"op": op, "reference": f"cbor.reference_{op}",
                              "ops_s": round(rates[2], 1),
                              "ours_over_reference": round(ours_rate / rates[2], 2)})
    return {
        "bench": "wire",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "body_bytes": len(body_bytes),
        "envelope_bytes": len(env),
        "iterations": iterations,
        "sig_iterations": sig_iterations,
        "repeats": repeats,
        "results": [asdict(r) for r in results],
        "reference": reference,
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        f"wire bench: CapabilityAd body {report['body_bytes']} B, envelope "
        f"{report['envelope_bytes']} B; Python {report['python']} {report['machine']}; "
        f"best of {report['repeats']}",
        f"{'op':<7} {'ours':<23} {'ops/s':>11}   {'baseline':<28} {'ops/s':>11}  ours/base",
    ]
    for r in report["results"]:
        lines.append(f"{r['op']:<7} {r['ours']:<23} {r['ours_ops_s']:>11,.0f}   "
                     f"{r['baseline']:<28} {r['baseline_ops_s']:>11,.0f}  {r['ratio']:>8.2f}x")
    for r in report["reference"]:
        lines.append(f"pure-Python {r['reference']}: {r['ops_s']:,.0f} ops/s "
                     f"(ours {r['ours_over_reference']:.1f}x faster)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_wire", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=20_000,
                   help="calls per timed loop for encode/decode (default 20000)")
    p.add_argument("--sig-iterations", type=int, default=2_000,
                   help="calls per timed loop for seal/open (default 2000)")
    p.add_argument("--repeats", type=int, default=3, help="timed loops per figure (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    a = p.parse_args(argv)
    if min(a.iterations, a.sig_iterations, a.repeats) < 1:
        p.error("iteration and repeat counts must be at least 1")
    report = run(a.iterations, a.sig_iterations, a.repeats)
    print(json.dumps(report) if a.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
