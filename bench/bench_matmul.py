"""Exact int8 matmul: our executor (float64 BLAS) against numpy's int64 matmul, in one run.

    python -m bench.bench_matmul [--n 256 512 1024 2048] [--repeat 3] [--json]

For each n (square n x n x n products of seeded random int8 matrices) it reports, best of
``--repeat`` runs:

* ``kernel_s``: :func:`matmul_exact_cpu`, the float64 BLAS product converted to int64;
* ``executor_s``: the whole ``matmul`` executor on the CPU, blob decoding and encoding included;
* ``gpu_s``: the executor on the GPU, when CuPy or PyTorch sees one;
* ``baseline_s``: the named baseline, ``a.astype(int64) @ b.astype(int64)`` (numpy has no
  BLAS kernel for integers), measured up to ``--baseline-max`` (default 512) and above it
  extrapolated as n^3 from the largest measured size (``baseline_estimated``: true);
* ``speedup``: ``baseline_s / kernel_s``.

Every measured baseline is also compared element by element with our result.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from p2pnode.jobs.executors import Limits
from p2pnode.jobs.executors.matmul import MatmulExecutor, detect_gpu, matmul_exact_cpu
from p2pnode.jobs.tensors import decode_matrix, encode_matrix, random_int8_matrix

BASELINE = "numpy int64 matmul (a.astype(int64) @ b.astype(int64))"


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def bench(sizes: Sequence[int], repeat: int, baseline_max: int) -> dict[str, Any]:
    limits = Limits(matmul_max_n=max(sizes), max_input_bytes=1 << 34, max_output_bytes=1 << 34)
    cpu = MatmulExecutor("cpu")
    gpu = MatmulExecutor("gpu") if detect_gpu() is not None else None
    rows: list[dict[str, Any]] = []
    measured: tuple[int, float] | None = None
    for n in sizes:
        a = random_int8_matrix(n, n, b"bench-a-%d" % n)
        b = random_int8_matrix(n, n, b"bench-b-%d" % n)
        inputs = {"a": encode_matrix(a), "b": encode_matrix(b)}
        kernel_s, ours = best_of(repeat, partial(matmul_exact_cpu, a, b))
        executor_s, res = best_of(repeat, partial(cpu.run, inputs, {}, limits))
        if not np.array_equal(decode_matrix(res.output, n * n, dtype="int64"), ours):
            raise AssertionError(f"n={n}: executor and kernel disagree")
        row: dict[str, Any] = {"n": n, "kernel_s": kernel_s, "executor_s": executor_s}
        if gpu is not None:
            gpu_s, gres = best_of(repeat, partial(gpu.run, inputs, {}, limits))
            if not np.array_equal(decode_matrix(gres.output, n * n, dtype="int64"), ours):
                raise AssertionError(f"n={n}: GPU and CPU disagree")
            row["gpu_s"] = gpu_s
            row["gpu_backend"] = gres.meta.get("backend")
        if n <= baseline_max:
            a64, b64 = a.astype(np.int64), b.astype(np.int64)
            base_s, expected = best_of(repeat, partial(np.matmul, a64, b64))
            if not np.array_equal(expected, ours):
                raise AssertionError(f"n={n}: float64 path is not exact")
            row.update(baseline_s=base_s, baseline_estimated=False, exact=True)
            measured = (n, base_s)
        elif measured is not None:
            row.update(baseline_s=measured[1] * (n / measured[0]) ** 3, baseline_estimated=True)
        if "baseline_s" in row:
            row["speedup"] = row["baseline_s"] / kernel_s
        rows.append(row)
    return {
        "baseline": BASELINE,
        "numpy": np.__version__,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "repeat": repeat,
        "rows": rows,
    }


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.3g}"


def render(report: dict[str, Any]) -> str:
    lines = [
        f"baseline: {report['baseline']}; numpy {report['numpy']}; best of {report['repeat']}",
        f"{'n':>6} {'kernel s':>10} {'executor s':>11} {'gpu s':>9} {'baseline s':>11} "
        f"{'speedup':>9}",
    ]
    for r in report["rows"]:
        est = "*" if r.get("baseline_estimated") else " "
        speedup = f"{r['speedup']:.3g}x{est}" if "speedup" in r else "-"
        lines.append(
            f"{r['n']:>6} {_fmt(r['kernel_s']):>10} {_fmt(r['executor_s']):>11} "
            f"{_fmt(r.get('gpu_s')):>9} {_fmt(r.get('baseline_s')):>10}{est} {speedup:>9}"
        )
    if any(r.get("baseline_estimated") for r in report["rows"]):
        lines.append("* baseline extrapolated as n^3 from the largest measured size")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_matmul", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-max", type=int, default=512,
                        help="largest n at which the int64 baseline is measured (slow)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if min(args.n) < 1 or args.repeat < 1:
        parser.error("sizes and --repeat must be >= 1")
    report = bench(sorted(args.n), args.repeat, args.baseline_max)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
