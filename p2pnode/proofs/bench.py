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

For wasm, a dispute between an honest and a cheating run of the ``step_lcg`` example
(spec 06 WSM, DSP), in this process: ``fuel``; ``checkpoints``; ``checkpoint_overhead``,
the checkpointed run's time over the same run with fuel alone; ``dispute_rounds`` (at
most ``max_rounds`` = 1 + ceil(log2(checkpoints))); ``referee_fraction``, the fuel of the
one segment the referee re-executed over the job's.
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

WASM_STEPS = 20_000  # of the step_lcg example: about 160 M fuel
WASM_CHECKPOINTS = 512


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


def bench_wasm(steps: int = WASM_STEPS, checkpoints: int = WASM_CHECKPOINTS) -> dict[str, Any]:
    """A dispute between an honest and a cheating run of the step_lcg example: the cheater
    flips one word of memory at 60 % of the steps and commits to what follows."""
    from p2pnode.jobs.wasm_examples import example_module
    from p2pnode.proofs import bisect, wasm_step
    from p2pnode.proofs import rows as rows_mod

    module = example_module("step_lcg")
    data = steps.to_bytes(4, "little")
    limit = 1 << 40
    t0 = time.perf_counter()
    fuel, out = wasm_step.fuel_only(module, data, limit)
    plain_s = time.perf_counter() - t0
    interval = max(1, fuel // checkpoints)
    t0 = time.perf_counter()
    plain_chain = wasm_step.run(module, data, limit, interval)  # as a worker runs it
    chain_s = time.perf_counter() - t0
    # The honest party of the dispute also keeps its states, to hand the referee one.
    honest = wasm_step.run(module, data, limit, interval, keep_states=True)
    if honest.output != out or plain_chain.entries != honest.entries:
        raise RuntimeError("checkpointing changed the run")

    def flip(r: wasm_step.StepRun, k: int) -> None:
        if k == steps * 6 // 10:
            r.poke(4096, b"\xff")

    cheat = wasm_step.run(module, data, limit, interval, tamper=flip)

    def party(chain: wasm_step.Chain) -> tuple[bisect.Claim, list[bytes], list[bytes]]:
        raw = chain.raw
        leaves = [rows_mod.leaf_hash(x) for x in raw]
        return bisect.Claim(rows_mod.root_of_leaves(leaves), len(raw)), raw, leaves

    (ca, ra, la), (cb, rb, lb) = party(honest), party(cheat)
    game = bisect.Bisection(ca, cb)
    step = game.start()
    while isinstance(step, bisect.Ask):
        i = step.index
        step = game.answer(bisect.Answer(ra[i], tuple(rows_mod.path(la, i))),
                           bisect.Answer(rb[i], tuple(rows_mod.path(lb, i))))
    assert isinstance(step, bisect.Segment), step
    start = None if step.start == bisect.START else honest.states[step.start]
    if start is not None and start.digest() != step.agreed.digest:  # type: ignore[union-attr]
        raise RuntimeError("the agreed state does not hash to the agreed entry")
    t0 = time.perf_counter()
    replayed = wasm_step.replay(module, data, limit, interval, start)
    referee_s = time.perf_counter() - t0
    outcome = bisect.settle(step, replayed)
    segment_fuel = replayed.fuel - (start.fuel if start is not None else 0)
    return {"fuel": fuel, "checkpoints": len(honest.entries),
            "checkpoint_overhead": round(chain_s / plain_s, 3),
            "dispute_rounds": game.rounds,
            "max_rounds": bisect.max_rounds(len(honest.entries)),
            "referee_fraction": round(segment_fuel / fuel, 6),
            "referee_s": round(referee_s, 4), "run_s": round(plain_s, 4),
            "cheater_lost": outcome.losers == frozenset({1})}


def run(sizes: Sequence[int] = DEFAULT_SIZES, repeat: int = 7,
        progress: Callable[[str], None] | None = None,
        wasm_steps: int = WASM_STEPS) -> dict[str, Any]:
    rows = []
    for n in sizes:
        if progress is not None:
            progress(f"matmul n={n} ...")
        rows.append(bench_matmul(n, repeat))
    if progress is not None:
        progress(f"wasm: {wasm_steps} steps, a dispute ...")
    return {"matmul": rows, "wasm": bench_wasm(wasm_steps),
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
    w = rep["wasm"]
    print(f"wasm: {w['fuel']} fuel, {w['checkpoints']} checkpoints, overhead "
          f"{w['checkpoint_overhead']}x over fuel alone; dispute {w['dispute_rounds']} rounds "
          f"(at most {w['max_rounds']}), referee re-ran {w['referee_fraction']:.5f} of the "
          f"job in {w['referee_s']} s; cheater lost: {w['cheater_lost']}")


def main_args(a: argparse.Namespace) -> int:
    import sys

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    rep = run(a.n, a.repeat, say, a.wasm_steps)
    if a.json:
        print(json.dumps(rep))
    else:
        print_table(rep)
    return 0 if all(r["caught"] for r in rep["matmul"]) and rep["wasm"]["cheater_lost"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_proofs", description=__doc__.split("\n")[0])
    add_arguments(p)
    return main_args(p.parse_args(argv))
