"""What the admin API shows: plain dicts built from the node's services and machines."""

from __future__ import annotations

from typing import Any

from p2pnode import __version__
from p2pnode.blobs.store import BlobStore
from p2pnode.caps.table import CapTable
from p2pnode.identity import peer_id_str
from p2pnode.jobs.market import LeaseState, RequesterJob


def job_summary(job: RequesterJob, blobs: BlobStore) -> dict[str, Any]:
    from p2pnode.proofs.receipts import job_output

    accepted = [le for le in job.leases.values() if le.state is LeaseState.ACCEPTED]
    out, how = job_output(job.spec.kind, job.spec.redundancy,
                          [le.output for le in accepted if le.output is not None])
    return {
        "id": job.id.hex(), "kind": job.spec.kind, "state": job.state.value,
        "created_ms": job.spec.created, "deadline_ms": job.spec.deadline,
        "completed_ms": job.completed_at,
        "latency_ms": (job.completed_at - job.spec.created) if job.completed_at else None,
        "reassigned": job.reassigned, "rejected": job.rejected,
        "worker": peer_id_str(accepted[0].worker) if accepted else None,
        "compute_ms": accepted[0].compute_ms if accepted else None,
        "output": out.hex() if out else None,
        "output_path": str(blobs.path(out)) if out and blobs.has(out) else None,
        "output_checked": how,  # PRF-6: freivalds, agreement, structural, ...
    }


def job_detail(job: RequesterJob, blobs: BlobStore, requester: str) -> dict[str, Any]:
    d = job_summary(job, blobs)
    d["spec"] = {
        "inputs": {k: v.hex() for k, v in job.spec.inputs},
        "params": {k: (v.hex() if isinstance(v, bytes) else v) for k, v in job.spec.params},
        "req": job.spec.req.to_body(), "max_price": job.spec.max_price,
        "lease_s": job.spec.lease_s, "redundancy": job.spec.redundancy,
        "requester": requester,
    }
    d["leases"] = [dict(le.to_row(), worker=peer_id_str(le.worker))
                   for le in job.leases.values()]
    d["history"] = [{"ts_ms": ts, "event": ev, "detail": det} for ts, ev, det in job.history]
    return d


def find_job(jobs: dict[bytes, RequesterJob], prefix: str) -> RequesterJob:
    """The job whose hex id (or id without its multihash prefix) starts with ``prefix``."""
    prefix = prefix.lower()
    hits = [j for j in jobs.values() if j.id.hex().startswith(prefix)
            or j.id.hex()[4:].startswith(prefix)]
    if not hits:
        raise KeyError(f"no job {prefix}")
    if len(hits) > 1:
        raise KeyError(f"job id prefix {prefix} is ambiguous")
    return hits[0]


def node_status(node: Any) -> dict[str, Any]:
    """``p2pnode status``: identity, peers and counters of a running node."""
    peers = node.stack.connected_peers() if node.stack else []
    market = node.market
    jobs: dict[str, Any] = {}
    if market is not None:
        counts: dict[str, int] = {}
        for j in market.jobs.values():
            counts[j.state.value] = counts.get(j.state.value, 0) + 1
        jobs = {"requested": counts, "working": market.worker.machine.active,
                "slots": node.config.jobs_concurrency}
    limits = market.usage() if market is not None else {}
    guard = node.stack.guard if node.stack else None
    if guard is not None:
        limits = {**limits, **guard.usage()}
    if node.stack is not None:
        from p2pnode.net.kad import dht_usage

        limits = {**limits, **dht_usage(node.stack.dht)}
    limits["caps_table"] = {"held": len(node.table), "cap": node.table.max_entries}
    limits["signature_cache"] = {"held": len(node.signatures),
                                 "cap": node.signatures.max_entries}
    if getattr(node, "ledger", None) is not None:
        limits["ledger"] = {"held": len(node.ledger.ledger), "cap": node.ledger.max_elements}
    return {
        "peer_id": node.peer_id,
        "network": node.config.network,
        "version": __version__,
        "addrs": node.stack.listen_addrs() if node.stack else [],
        "peers": len(peers),
        "caps_known": node.caps_known(),
        "caps_seq": node.store.counter("caps_seq"),
        "uptime_s": round(node.clock() - node.started_at, 3),
        "metrics": node.metrics_addr,
        "gpus": len(node.hardware.gpus) if node.hardware else 0,
        "counters": node.metrics.snapshot(),
        "jobs": jobs,
        "fraud": node.fraud.summary() if getattr(node, "fraud", None) is not None else {},
        "receipts": node.store.receipt_count(),
        "disputes": node.market.requester.steps.disputes if node.market is not None else 0,
        "ledger": (node.ledger.summary() if getattr(node, "ledger", None) is not None else {}),
        "challenge": (node.challenge.summary()
                      if getattr(node, "challenge", None) is not None else {}),
        "limits": limits,
    }


def peer_rows(node: Any) -> list[dict[str, Any]]:
    """``p2pnode peers``: connected peers, their addresses, whether we hold their ad."""
    if node.caps is None:
        return []
    return sorted(({"peer_id": p, "addrs": addrs, "has_ad": p in node.table}
                   for p, addrs in node.caps.gossip.peer_addrs().items()),
                  key=lambda p: str(p["peer_id"]))


def caps_rows(table: CapTable, self_id: str, now: int) -> list[dict[str, Any]]:
    """``p2pnode caps``: the live capability table."""
    rows = []
    for e in sorted(table.live(now), key=lambda e: e.peer_id):
        body = e.ad.to_body()
        body.pop("net")
        rows.append({"peer_id": e.peer_id, "self": e.peer_id == self_id,
                     "expires_in_s": round((e.ad.expires_at_ms() - now) / 1000, 1), **body})
    return rows
