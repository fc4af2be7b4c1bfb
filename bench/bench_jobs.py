"""Job market benchmarks on loopback.

1. Job overhead: N real node processes (default 5), J small matmul jobs (default 100,
   n=16) submitted from node 0 at a steady rate; for each job, latency = submit to verified
   result, compute = the executor time the worker reported, overhead = latency - compute.
   Prints p50/p99 of each.
2. DHT discovery latency: 5 in-process nodes; put_value / get_value (from another node),
   provide / find_providers (from another node) of job records and discovery keys, as the
   market uses them. Prints p50/p99 per operation.

    python -m bench.bench_jobs [--nodes 5] [--jobs 100] [--n 16] [--rate 10] [--json]
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


def bench_overhead(nodes_n: int, jobs: int, n: int, rate: float) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="p2pnode-bench-"))
    opts = launcher.TestnetOptions(n=nodes_n, directory=root, network="bench",
                                   caps_interval=5.0)
    nodes = launcher.prepare_nodes(opts, root)
    try:
        launcher.start_network(nodes)
        launcher.wait_caps_converged(nodes, 60)
        ids: list[str] = []
        t0 = time.monotonic()
        for i in range(jobs):
            ids += [j["id"] for j in call(nodes[0].home, "job.submit",
                                          {"kind": "matmul", "n": n, "lease_s": 10})]
            time.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))
            if (i + 1) % 20 == 0:
                print(f"  submitted {i + 1}/{jobs}", file=sys.stderr)
        final: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 300
        while len(final) < len(ids) and time.monotonic() < deadline:
            for j in call(nodes[0].home, "job.list")["jobs"]:
                if j["state"] in ("completed", "failed"):
                    final[j["id"]] = j
            time.sleep(0.3)
    finally:
        launcher._stop(nodes)
    done = [j for j in final.values() if j["state"] == "completed"]
    lat = [float(j["latency_ms"]) for j in done]
    comp = [float(j["compute_ms"] or 0) for j in done]
    over = [a - b for a, b in zip(lat, comp, strict=True)]
    return {"nodes": nodes_n, "jobs": jobs, "n": n, "rate_per_s": rate,
            "completed": len(done), "failed": len(final) - len(done),
            "latency_ms": summary(lat), "compute_ms": summary(comp),
            "overhead_ms": summary(over)}


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
    p.add_argument("--jobs", type=int, default=100)
    p.add_argument("--n", type=int, default=16, help="matmul size of each job")
    p.add_argument("--rate", type=float, default=10.0, help="jobs submitted per second")
    p.add_argument("--dht-ops", type=int, default=30)
    p.add_argument("--skip-jobs", action="store_true")
    p.add_argument("--skip-dht", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    out: dict[str, Any] = {}
    if not a.skip_jobs:
        print(f"job overhead: {a.nodes} nodes, {a.jobs} jobs ...", file=sys.stderr)
        out["overhead"] = bench_overhead(a.nodes, a.jobs, a.n, a.rate)
    if not a.skip_dht:
        print(f"DHT latency: 5 nodes, {a.dht_ops} ops each ...", file=sys.stderr)
        out["dht_ms"] = trio.run(bench_dht, a.dht_ops)
    if a.json:
        print(json.dumps(out))
        return 0
    if "overhead" in out:
        o = out["overhead"]
        print(f"jobs: {o['completed']}/{o['jobs']} completed on {o['nodes']} nodes "
              f"(matmul n={o['n']}, {o['rate_per_s']}/s)")
        for k in ("latency_ms", "compute_ms", "overhead_ms"):
            s = o[k]
            print(f"  {k:<12} p50 {s['p50']:>8.1f}  p99 {s['p99']:>8.1f}  mean {s['mean']:>8.1f}")
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
