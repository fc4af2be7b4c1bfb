"""Job market benchmarks on loopback.

1. Market: N real node processes (default 5), small matmul jobs (n=16).
   Throughput: every node submits its share of S jobs (default 200) at once; jobs/s
   completed, from the first job's creation to the last one's verified result. Baseline in
   the same run: the same matmul executed in process, back to back (ratio ours/baseline).
   Overhead: then J jobs (default 100) submitted from node 0 at half that throughput (or
   ``--rate``); for each job, latency = submit to verified result, compute = the executor
   time the worker reported, overhead = latency - compute. Prints p50/p99 of each.
2. DHT discovery latency: 5 in-process nodes; put_value / get_value (from another node),
   provide / find_providers (from another node) of job records and discovery keys, as the
   market uses them. Prints p50/p99 per operation.

    python -m bench.bench_jobs [--nodes 5] [--sat-jobs 200] [--jobs 100] [--n 16]
                               [--rate R] [--skip-dht] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from p2pnode.api.client import call
from p2pnode.caps.probe import Hardware
from p2pnode.config import Config
from p2pnode.identity import Identity
from p2pnode.jobs import discovery
from p2pnode.jobs.model import NONCE_SIZE, JobSpec, Requirements, SignedJob
from p2pnode.node import Node
from p2pnode.testnet import launcher


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, round(p * (len(v) - 1)))] if v else float("nan")


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(pct(values, 0.5), 2), "p99": round(pct(values, 0.99), 2),
            "mean": round(statistics.fmean(values), 2) if values else float("nan"),
            "count": len(values)}


def _final_jobs(nodes: list[launcher.NodeProc], ids: set[str],
                timeout: float) -> dict[str, dict[str, Any]]:
    """Poll the requesters until every job in ``ids`` is completed or failed."""
    final: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(final) < len(ids) and time.monotonic() < deadline:
        for node in nodes:
            for j in call(node.home, "job.list")["jobs"]:
                if j["id"] in ids and j["state"] in ("completed", "failed"):
                    final[j["id"]] = j
        time.sleep(0.3)
    return final


def throughput(nodes: list[launcher.NodeProc], jobs: int, n: int) -> dict[str, Any]:
    """Every node submits its share of ``jobs`` at once; jobs/s completed from the first
    job's creation to the last one's verification."""
    ids: set[str] = set()
    for i, node in enumerate(nodes):
        count = jobs // len(nodes) + (1 if i < jobs % len(nodes) else 0)
        if count:
            ids |= {j["id"] for j in call(node.home, "job.submit",
                                         {"kind": "matmul", "n": n, "count": count,
                                          "lease_s": 10}, timeout=60.0)}
    final = _final_jobs(nodes, ids, 300)
    done = [j for j in final.values() if j["state"] == "completed"]
    span_ms = (max(j["completed_ms"] for j in done) - min(j["created_ms"] for j in done)
               if done else 0)
    return {"jobs": jobs, "completed": len(done), "failed": len(final) - len(done),
            "span_s": round(span_ms / 1000, 2),
            "jobs_per_s": round(len(done) / (span_ms / 1000), 2) if span_ms > 0 else 0.0,
            "latency_ms": summary([float(j["latency_ms"]) for j in done])}


def overhead(nodes: list[launcher.NodeProc], jobs: int, n: int, rate: float) -> dict[str, Any]:
    """``jobs`` submitted from node 0 at ``rate`` per second; latency = submit to verified
    result, overhead = latency - the executor time the worker reported."""
    ids: list[str] = []
    t0 = time.monotonic()
    for i in range(jobs):
        ids += [j["id"] for j in call(nodes[0].home, "job.submit",
                                      {"kind": "matmul", "n": n, "lease_s": 10})]
        time.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))
        if (i + 1) % 20 == 0:
            print(f"  submitted {i + 1}/{jobs}", file=sys.stderr)
    final = _final_jobs(nodes[:1], set(ids), 300)
    done = [j for j in final.values() if j["state"] == "completed"]
    lat = [float(j["latency_ms"]) for j in done]
    comp = [float(j["compute_ms"] or 0) for j in done]
    over = [a - b for a, b in zip(lat, comp, strict=True)]
    return {"jobs": jobs, "n": n, "rate_per_s": round(rate, 2),
            "completed": len(done), "failed": len(final) - len(done),
            "latency_ms": summary(lat), "compute_ms": summary(comp),
            "overhead_ms": summary(over)}


def bare_executor(n: int, seconds: float = 2.0) -> dict[str, Any]:
    """The baseline: the same matmul executed in this process, back to back (no network,
    no child process, no signatures, no verification)."""
    from p2pnode.jobs.executors import get_executor
    from p2pnode.jobs.executors.base import DEFAULT_LIMITS
    from p2pnode.jobs.tensors import encode_matrix, random_int8_matrix

    ex = get_executor("matmul", "cpu")
    inputs = {"a": encode_matrix(random_int8_matrix(n, n, b"a" * 32)),
              "b": encode_matrix(random_int8_matrix(n, n, b"b" * 32))}
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ex.run(inputs, {}, DEFAULT_LIMITS)
        count += 1
    elapsed = time.perf_counter() - t0
    return {"jobs_per_s": round(count / elapsed, 1),
            "ms_per_job": round(1000 * elapsed / count, 3)}


def bench_market(nodes_n: int, sat_jobs: int, jobs: int, n: int,
                 rate: float | None) -> dict[str, Any]:
    """Throughput at saturation, then overhead at ``rate`` (default: half the throughput)
    on the same running network."""
    root = Path(tempfile.mkdtemp(prefix="p2pnode-bench-"))
    opts = launcher.TestnetOptions(n=nodes_n, directory=root, network="bench",
                                   caps_interval=5.0)
    nodes = launcher.prepare_nodes(opts, root)
    out: dict[str, Any] = {"nodes": nodes_n, "n": n}
    try:
        launcher.start_network(nodes)
        launcher.wait_caps_converged(nodes, 60)
        if sat_jobs:
            print(f"  throughput: {sat_jobs} jobs submitted at once ...", file=sys.stderr)
            out["throughput"] = throughput(nodes, sat_jobs, n)
            if rate is None:
                rate = max(0.5, out["throughput"]["jobs_per_s"] / 2)
        if jobs:
            rate = rate or 10.0
            print(f"  overhead: {jobs} jobs at {rate:.2f}/s ...", file=sys.stderr)
            out["overhead"] = overhead(nodes, jobs, n, rate)
    finally:
        launcher.stop_nodes(nodes)
    return out


HW = Hardware(cores=2, threads=2, arch="x86_64", mem=8 << 30, gpus=())


async def bench_dht(ops: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="p2pnode-bench-dht-"))
    results: dict[str, list[float]] = {"put_value": [], "get_value": [], "provide": [],
                                       "find_providers": []}
    async with trio.open_nursery() as nursery:
        nodes: list[Node] = []
        for i in range(5):
            home = tmp / f"n{i}"
            home.mkdir()
            boot: tuple[str, ...] = ()
            if nodes:
                a = nodes[0].stack.listen_addrs()[0]
                boot = (a,)
            cfg = Config(network="benchdht", listen=("/ip4/127.0.0.1/tcp/0",),
                         metrics_listen="", bootstrap=boot, caps_kinds=(), jobs_offer=False)
            node = Node(home, cfg, Identity.generate(), hardware=HW)
            await nursery.start(node.run)
            nodes.append(node)
        with trio.fail_after(30):
            while not all(len(x.stack.connected_peers()) >= 1 for x in nodes):
                await trio.sleep(0.1)
        for x in nodes[1:]:
            for y in nodes:
                if x is not y:
                    from libp2p.peer.id import ID

                    await x.stack.dht.add_peer(ID.from_base58(y.peer_id))
        for i in range(ops):
            a, b = nodes[i % 5], nodes[(i + 2) % 5]
            now = a.now_ms()
            spec = JobSpec(net="benchdht", kind="matmul", inputs=(), params=(),
                           req=Requirements(), max_price=1, created=now,
                           deadline=now + 600_000, lease_s=10, redundancy=1,
                           nonce=os.urandom(NONCE_SIZE))
            raw = spec.seal(a.identity)
            key = discovery.job_record_key(SignedJob.open(raw).id)
            t = time.perf_counter()
            with trio.fail_after(20):
                await a.stack.dht.put_value(key, raw)
            results["put_value"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            with trio.fail_after(20):
                got = await b.stack.dht.get_value(key)
            results["get_value"].append((time.perf_counter() - t) * 1000)
            assert got == raw, "DHT returned another value"
            pkey = discovery.discovery_key("benchdht", "matmul", "cpu", i)
            t = time.perf_counter()
            with trio.fail_after(20):
                await a.stack.dht.provide(pkey)
            results["provide"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            with trio.fail_after(20):
                provs = await b.stack.dht.find_providers(pkey, 20)
            results["find_providers"].append((time.perf_counter() - t) * 1000)
            assert any(p.peer_id.to_base58() == a.peer_id for p in provs)
        nursery.cancel_scope.cancel()
    return {op: summary(v) for op, v in results.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_jobs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--sat-jobs", type=int, default=200,
                   help="jobs submitted at once for the throughput (0: skip)")
    p.add_argument("--jobs", type=int, default=100, help="jobs of the overhead run (0: skip)")
    p.add_argument("--n", type=int, default=16, help="matmul size of each job")
    p.add_argument("--rate", type=float, default=None,
                   help="jobs per second of the overhead run (default: half the throughput)")
    p.add_argument("--dht-ops", type=int, default=30)
    p.add_argument("--skip-jobs", action="store_true")
    p.add_argument("--skip-dht", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    out: dict[str, Any] = {}
    if not a.skip_jobs and (a.sat_jobs or a.jobs):
        print(f"market: {a.nodes} nodes, matmul n={a.n} ...", file=sys.stderr)
        out["market"] = bench_market(a.nodes, a.sat_jobs, a.jobs, a.n, a.rate)
        out["baseline"] = bare_executor(a.n)
        t = out["market"].get("throughput")
        if t:
            t["ratio"] = round(t["jobs_per_s"] / out["baseline"]["jobs_per_s"], 4)
    if not a.skip_dht:
        print(f"DHT latency: 5 nodes, {a.dht_ops} ops each ...", file=sys.stderr)
        out["dht_ms"] = trio.run(bench_dht, a.dht_ops)
    if a.json:
        print(json.dumps(out))
        return 0
    if "market" in out:
        m, b = out["market"], out["baseline"]
        print(f"market: {m['nodes']} nodes, matmul n={m['n']}; baseline: the bare executor "
              f"in process, {b['jobs_per_s']} jobs/s ({b['ms_per_job']} ms each)")
        if "throughput" in m:
            t = m["throughput"]
            print(f"  throughput  {t['jobs_per_s']} jobs/s ({t['completed']}/{t['jobs']} "
                  f"completed in {t['span_s']} s; ours/baseline {t['ratio']})")
        if "overhead" in m:
            o = m["overhead"]
            print(f"  at {o['rate_per_s']} jobs/s: {o['completed']}/{o['jobs']} completed")
            for k in ("latency_ms", "compute_ms", "overhead_ms"):
                s = o[k]
                print(f"  {k:<12} p50 {s['p50']:>8.1f}  p99 {s['p99']:>8.1f}  "
                      f"mean {s['mean']:>8.1f}")
    if "dht_ms" in out:
        print("DHT (ms):")
        for op, s in out["dht_ms"].items():
            note = ""
            if op == "get_value":
                note = "  (replication k=20 > 5 nodes: every node holds the record)"
            print(f"  {op:<15} p50 {s['p50']:>8.1f}  p99 {s['p99']:>8.1f}{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
