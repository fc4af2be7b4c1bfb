"""What the admin API shows of jobs: plain dicts built from the requester's machine."""

from __future__ import annotations

from typing import Any

from p2pnode.blobs.store import BlobStore
from p2pnode.identity import peer_id_str
from p2pnode.jobs.market import LeaseState, RequesterJob


def job_summary(job: RequesterJob, blobs: BlobStore) -> dict[str, Any]:
    accepted = [le for le in job.leases.values() if le.state is LeaseState.ACCEPTED]
    out = accepted[0].output if accepted else None
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
