"""``p2pnode bench proofs``: what checking a result costs against computing it, in one run.

For each matmul n (square products of seeded random int8 matrices), best of ``repeat``:

* ``blas_s``: the bare float64 BLAS product of the same matrices, already in float64: the
  named baseline, the fastest exact way this machine has (spec 06 §2.2);
* ``work_s``: what an honest worker does, the exact product (float64 BLAS, converted to
  int64) and its row commitment (PRF-1); ``work_vs_blas`` = work_s / blas_s;
* ``verify_s``: what the verifier does on the accepted path, the seed (PRF-3) and
  Freivalds' test (PRF-2); ``ratio`` = verify_s / work_s; ``soundness_bits``;
* ``caught``: the same check refuses the product with one entry off by one.

Content-id hashing of the blobs is left out of both sides: every blob of every kind is
hashed on its way (BLOB-13), whatever the proof.

The ``wasm`` half of the issue's benchmark (checkpoint chains, bisection) is not built yet:
``wasm`` is null and ``wasm_status`` says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from p2pnode.jobs.executors.matmul import matmul_exact_cpu
from p2pnode.jobs.tensors import random_int8_matrix
from p2pnode.proofs import matmul
from p2pnode.proofs.bench_args import DEFAULT_SIZES, add_arguments

WASM_STATUS = "not implemented: wasm checkpoint chains and bisection disputes are still open"


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def bench_matmul(n: int, repeat: int) -> dict[str, Any]:
    a = random_int8_matrix(n, n, b"bench-proofs-a-%d" % n)
    b = random_int8_matrix(n, n, b"bench-proofs-b-%d" % n)
    af, bf = a.astype(np.float64), b.astype(np.float64)
    secret, job, output = bytes(32), bytes(34), bytes(34)

    def work() -> tuple[np.ndarray[Any, Any], bytes]:
        c = matmul_exact_cpu(a, b)
        return c, matmul.commitment(c)[matmul.ROWS_KEY]

    # The three are measured in turn, ``repeat`` rounds, best of each: a slow spell of a
    # shared machine then slows all three alike instead of one of them.
    blas_s = work_s = verify_s = float("inf")
    judged: matmul.Judgement | None = None
    def verify(c: np.ndarray[Any, Any], root: bytes) -> matmul.Judgement:
        return matmul.judge(a, b, c, root, matmul.draw_seed(secret, job, 1, output, root))

    for _ in range(repeat):
        blas_s = min(blas_s, _timed(lambda: af @ bf)[0])
        t, (c, root) = _timed(work)
        work_s = min(work_s, t)
        t, judged = _timed(partial(verify, c, root))
        verify_s = min(verify_s, t)
    assert judged is not None
    if not judged.ok:
        raise RuntimeError(f"n={n}: the true product was refused ({judged.reason})")
    wrong = c.copy()
    wrong[n // 2, n // 3] += 1
    caught = matmul.judge(a, b, wrong, matmul.rows_root(wrong), bytes(32)).reason is not None
    return {"n": n, "work_s": round(work_s, 5), "blas_s": round(blas_s, 5),
            "work_vs_blas": round(work_s / blas_s, 3), "verify_s": round(verify_s, 5),
            "ratio": round(verify_s / work_s, 4), "soundness_bits": judged.soundness_bits,
            "caught": caught}


def run(sizes: Sequence[int] = DEFAULT_SIZES, repeat: int = 5,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    rows = []
    for n in sizes:
        if progress is not None:
            progress(f"matmul n={n} ...")
        rows.append(bench_matmul(n, repeat))
    return {"matmul": rows, "wasm": None, "wasm_status": WASM_STATUS,
            "baseline": "float64 BLAS product of the same matrices (numpy, already float64)",
            "excluded": "content-id hashing of blobs (BLOB-13), the same for every kind",
            "machine": {"python": platform.python_version(), "machine": platform.machine()}}


def print_table(rep: dict[str, Any]) -> None:
    print(f"{'n':>6} {'work s':>9} {'blas s':>9} {'work/blas':>9} {'verify s':>9} "
          f"{'ratio':>7} {'bits':>5} caught")
    for r in rep["matmul"]:
        print(f"{r['n']:>6} {r['work_s']:>9.4f} {r['blas_s']:>9.4f} {r['work_vs_blas']:>9.3f} "
              f"{r['verify_s']:>9.4f} {r['ratio']:>7.4f} {r['soundness_bits']:>5} "
              f"{'yes' if r['caught'] else 'NO'}")
    print(f"baseline: {rep['baseline']}; excluded from both: {rep['excluded']}")
    print(f"wasm: {rep['wasm_status']}")


def main_args(a: argparse.Namespace) -> int:
    import sys

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    rep = run(a.n, a.repeat, say)
    if a.json:
        print(json.dumps(rep))
    else:
        print_table(rep)
    return 0 if all(r["caught"] for r in rep["matmul"]) else 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_proofs", description=__doc__.split("\n")[0])
    add_arguments(p)
    return main_args(p.parse_args(argv))
