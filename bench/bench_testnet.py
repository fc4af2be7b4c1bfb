"""Testnet benchmark: how long N real nodes on 127.0.0.1 take to start and to converge.

    python -m bench.bench_testnet [--sizes 5,20,50] [--caps-interval S] [--json]

Each size is its own ``p2pnode testnet up -n N --duration D --json`` run (D = 60 s + 2 s per
node), one after the other. Converged means every node holds every other node's ad.

The baseline is the ad-interval bound of the same run: without the held-ads exchange
(spec 02 §7) a node that joins learns an ad only at its signer's next publication, up to
``1.1 x caps_interval`` later (PUB-2's jitter). ``ratio`` is ``converge_s`` over that
bound (below 1: the network converges before a single ad interval has passed).
``converge_s`` counts from the moment every node serves its admin API; ``start_s`` is the
start before it (nodes start in a rolling wave, testnet/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass

from p2pnode.testnet.model import default_caps_interval

JITTER = 1.1  # PUB-2: an interval is drawn from [0.9, 1.1] x caps_interval_s


@dataclass
class Run:
    n: int
    converged: bool
    exit_code: int
    start_s: float | None
    converge_s: float | None
    total_s: float | None
    node_start_p50_s: float | None
    node_start_max_s: float | None
    bound_s: float
    ratio: float | None  # converge_s / bound_s


def duration_for(n: int) -> float:
    return 60.0 + 2.0 * n


def run_one(n: int, caps_interval: float | None, timeout_margin_s: float = 60.0) -> Run:
    duration = duration_for(n)
    cmd = [sys.executable, "-m", "p2pnode", "testnet", "up", "-n", str(n), "--duration",
           str(duration), "--json"]
    if caps_interval is not None:
        cmd += ["--caps-interval", str(caps_interval)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          timeout=duration + timeout_margin_s)
    interval = default_caps_interval(n) if caps_interval is None else caps_interval
    bound = round(JITTER * interval, 3)
    try:
        rep = json.loads(proc.stdout)
    except ValueError:
        print(proc.stderr[-2000:], file=sys.stderr)
        return Run(n, False, proc.returncode, None, None, None, None, None, bound, None)
    conv = rep.get("converge_s")
    starts = rep.get("node_start_s", {})
    return Run(n=n, converged=bool(rep["converged"]), exit_code=proc.returncode,
               start_s=rep.get("start_s"), converge_s=conv, total_s=rep.get("total_s"),
               node_start_p50_s=starts.get("p50"), node_start_max_s=starts.get("max"),
               bound_s=bound, ratio=None if conv is None else round(conv / bound, 3))


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_testnet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="5,20,50", help="node counts, comma-separated")
    p.add_argument("--caps-interval", type=float, default=None,
                   help="seconds between ads (default: the launcher's, 10 s or N s "
                   "above 10 nodes)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    runs = []
    for n in sizes:
        print(f"testnet of {n} nodes ...", file=sys.stderr, flush=True)
        runs.append(run_one(n, a.caps_interval))
    if a.json:
        print(json.dumps({"python": platform.python_version(), "machine": platform.machine(),
                          "cpus": os.cpu_count(),
                          "caps_interval_s": {r.n: r.bound_s / JITTER for r in runs},
                          "runs": [asdict(r) for r in runs]}))
    else:
        print(f"bound = {JITTER} x caps_interval; {os.cpu_count()} CPUs")
        print(f"{'N':>3}  {'CONV':>4}  {'START_S':>7}  {'NODE_P50':>8}  {'NODE_MAX':>8}  "
              f"{'CONVERGE_S':>10}  {'TOTAL_S':>7}  {'CONV/BOUND':>10}")
        for r in runs:
            print(f"{r.n:>3}  {'yes' if r.converged else 'NO':>4}  {_fmt(r.start_s, '.1f'):>7}  "
                  f"{_fmt(r.node_start_p50_s):>8}  {_fmt(r.node_start_max_s):>8}  "
                  f"{_fmt(r.converge_s):>10}  {_fmt(r.total_s, '.1f'):>7}  "
                  f"{_fmt(r.ratio, '.3f'):>10}")
    return 0 if all(r.converged for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
