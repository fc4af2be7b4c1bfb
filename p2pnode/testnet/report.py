"""The report of ``p2pnode testnet up``: built from every node's last status and the job
driver's findings, printed as a table or as JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from p2pnode.testnet.jobs import JobDriver
from p2pnode.testnet.model import NodeProc, TestnetOptions


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def build_report(opts: TestnetOptions, root: Path, nodes: list[NodeProc], converged: bool,
                 started: float, converge_s: float | None, start_concurrency: int,
                 jobs: JobDriver | None = None,
                 start_s: float | None = None) -> dict[str, Any]:
    """The report of one run: the network, every node, and the jobs when it ran some."""
    starts = sorted(n.start_s for n in nodes if n.start_s is not None)
    rep: dict[str, Any] = {
        "converged": converged,
        "network": opts.network,
        "dir": str(root),
        "elapsed_s": round(time.monotonic() - started, 3),
        # From the moment every node serves its admin API.
        "converge_s": _round(converge_s),
        # From the launcher's start: the nodes' start, then convergence.
        "start_s": _round(start_s),
        "total_s": _round(None if converge_s is None or start_s is None
                          else start_s + converge_s),
        "start_concurrency": start_concurrency,
        "caps_interval_s": opts.interval_s,
        "node_start_s": {
            "p50": _round(starts[len(starts) // 2]) if starts else None,
            "max": _round(starts[-1]) if starts else None,
        },
        "nodes": [
            {
                "index": n.index,
                "peer_id": n.peer_id,
                "pid": n.proc.pid if n.proc is not None else None,
                "start_s": _round(n.start_s),
                "peers": int(n.status.get("peers", 0)),
                "caps_known": int(n.status.get("caps_known", 0)),
                "addrs": n.status.get("addrs", []),
                "metrics": n.status.get("metrics"),
                "ads_rejected": n.status.get("counters", {}).get("ads_rejected", {}),
                "log": str(n.home / "node.log"),
                **({"error": n.error} if n.error else {}),
            }
            for n in nodes
        ],
    }
    if jobs is not None:
        rep["jobs"] = jobs.report()
        fraud = [n.status.get("fraud", {}) for n in nodes]
        rep["jobs"]["fraud_proofs"] = sum(int(f.get("published", 0)) for f in fraud)
        # Nodes that checked a proof and barred its cheater (a publisher counts itself).
        rep["jobs"]["fraud_seen_by"] = sum(1 for f in fraud if int(f.get("taken", 0)) > 0)
        # Capability challenges (spec 06 §6): each node's own verdicts on its peers.
        ch = [n.status.get("challenge", {}) for n in nodes]
        rep["caps"] = {"attested": sum(int(c.get("attested", 0)) for c in ch),
                       "failed": sum(int(c.get("failed", 0)) for c in ch),
                       "never": sum(int(c.get("never", 0)) for c in ch)}
        # Receipts the requesters signed (spec 06 RCP-1): one per accepted result.
        rep["jobs"]["receipts"] = sum(int(n.status.get("receipts", 0)) for n in nodes)
        # Step results that disagreed and were settled by a bisection game (spec 06 DSP).
        rep["jobs"]["disputes"] = sum(int(n.status.get("disputes", 0)) for n in nodes)
        rep["cheaters"] = [n.peer_id for n in nodes[opts.n - opts.cheaters:]] \
            if opts.cheaters else []
    return rep


def print_report(rep: dict[str, Any]) -> None:
    """The report as a table (``--json`` prints ``rep`` itself)."""
    verdict = "CONVERGED" if rep["converged"] else "NOT CONVERGED"
    when = f" in {rep['converge_s']:.1f} s" if rep["converge_s"] is not None else ""
    print(f"testnet {rep['network']}: {verdict}{when}, {len(rep['nodes'])} nodes, "
          f"logs in {rep['dir']}")
    if rep["start_s"] is not None:
        ns = rep["node_start_s"]
        print(f"start: all nodes serving after {rep['start_s']:.1f} s, "
              f"{rep['start_concurrency']} at a time; one node p50 {ns['p50']:.2f} s, "
              f"max {ns['max']:.2f} s")
    if "jobs" in rep:
        j = rep["jobs"]
        print(f"jobs: {j['submitted']} submitted, {j['completed']} completed, {j['failed']} "
              f"failed, {j['reassigned']} reassigned; latency p50 {j['p50_ms']} ms, "
              f"p99 {j['p99_ms']} ms")
    if "ledger" in rep:
        lg = rep["ledger"]
        print(f"ledger: {'converged' if lg['converged'] else 'NOT converged'}, "
              f"{lg['receipts']} receipts ({lg['late_receipts']} late), "
              f"{lg['epochs_closed']} epochs closed, roots "
              f"{'agree' if lg['roots_agree'] else 'DIFFER'}")
    if "chain" in rep:
        c = rep["chain"]
        print(f"chain: {c['backend']}, {len(c['anchored_epochs'])} epochs anchored, roots "
              f"{'match' if c['roots_match'] else 'DIFFER'}, {c['claims_ok']} claims paid")
    print(f"{'#':>2}  {'PEER':<52}  {'START':>6}  {'PEERS':>5}  {'CAPS':>4}  NOTE")
    for n in rep["nodes"]:
        note = n.get("error", "")
        if n["ads_rejected"]:
            note = (note + " rejected " + json.dumps(n["ads_rejected"])).strip()
        start = "-" if n["start_s"] is None else f"{n['start_s']:.2f}"
        print(f"{n['index']:>2}  {n['peer_id']:<52}  {start:>6}  {n['peers']:>5}  "
              f"{n['caps_known']:>4}  {note}")
