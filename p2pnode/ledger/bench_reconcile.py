"""Figures of ledger set reconciliation (sync/1) for the benchmark, in one call.

Two replicas of ``n`` keys each share ``n - diff/2`` keys and hold ``diff/2`` of their own,
so the symmetric difference is ``diff``. The keys are sha256 of seeded counters, generated
in order. Two cases place the differing keys:

    newest      the last ``diff`` keys generated (what a replica that fell behind lacks)
    scattered   ``diff`` keys drawn uniformly among all of them

and a third session runs two identical replicas. ``bytes`` counts every sync message both
ways; ``full_bytes`` is what sending every id would cost (32 * n), ``ratio`` the first over
the second. ``rounds`` counts request/response exchanges, ``seconds`` the session's wall
time in process (both sides' encoding included).
"""

from __future__ import annotations

import hashlib
import random
import time
from typing import TypedDict

from p2pnode.ledger.reconcile import run_session


class CaseFigures(TypedDict):
    case: str
    n: int
    diff: int
    bytes: int
    full_bytes: int
    ratio: float
    bytes_per_diff: float
    rounds: int
    seconds: float


class IdenticalFigures(TypedDict):
    bytes: int
    rounds: int


class Figures(TypedDict):
    reconcile: list[CaseFigures]
    identical: IdenticalFigures


def _keys(count: int, seed: int) -> list[bytes]:
    prefix = seed.to_bytes(8, "little", signed=True)
    return [hashlib.sha256(prefix + i.to_bytes(8, "little")).digest() for i in range(count)]


def replicas(n: int, diff: int, seed: int, case: str) -> tuple[list[bytes], list[bytes]]:
    """The two replicas' keys for ``case`` ("newest" or "scattered")."""
    if diff % 2 or not 0 <= diff // 2 <= n:
        raise ValueError("diff must be even and at most 2 * n")
    keys = _keys(n + diff // 2, seed)
    if case == "newest":
        differing = list(range(len(keys) - diff, len(keys)))
    elif case == "scattered":
        differing = random.Random(seed).sample(range(len(keys)), diff)
    else:
        raise ValueError("unknown case %r" % case)
    only_i = set(differing[0::2])
    only_r = set(differing[1::2])
    ki = [k for i, k in enumerate(keys) if i not in only_r]
    kr = [k for i, k in enumerate(keys) if i not in only_i]
    return ki, kr


def reconcile_figures(n: int = 100_000, diff: int = 1_000, seed: int = 1) -> Figures:
    out: list[CaseFigures] = []
    for case in ("newest", "scattered"):
        ki, kr = replicas(n, diff, seed, case)
        t0 = time.perf_counter()
        r = run_session(ki, kr)
        seconds = time.perf_counter() - t0
        if len(r.missing) + len(r.extra) != diff:
            raise AssertionError("the session did not find the difference")
        out.append({
            "case": case, "n": n, "diff": diff, "bytes": r.total_bytes,
            "full_bytes": 32 * n, "ratio": r.total_bytes / (32 * n),
            "bytes_per_diff": r.total_bytes / diff if diff else 0.0,
            "rounds": r.rounds, "seconds": round(seconds, 3),
        })
    keys = _keys(n, seed)
    same = run_session(keys, keys)
    return {"reconcile": out, "identical": {"bytes": same.total_bytes, "rounds": same.rounds}}
