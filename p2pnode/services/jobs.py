"""The job market of one node: the ``/job/1`` dispatcher over the requester and worker
shells, their metrics, and the housekeeping that keeps what the market stores bounded
(the blob store's retention sweep, old rows of ``state.db``; spec 04 §8, spec 05 §4.4)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge

from p2pnode.jobs.market import TERMINAL
from p2pnode.jobs.messages import (
    Drop,
    JobClaim,
    JobGet,
    JobHeartbeat,
    JobList,
    JobOffer,
    JobProbe,
    JobQuery,
    JobRefuse,
    JobResult,
    route,
)
from p2pnode.jobs.worker import MAX_SEEN, WorkState
from p2pnode.jobs.worker import OPEN as WORK_OPEN
from p2pnode.log import event
from p2pnode.ports import Exchange, Transport
from p2pnode.proofs.bisect import committed_chain
from p2pnode.proofs.rows import committed_root
from p2pnode.services.requester import RequesterService
from p2pnode.services.worker import WorkerService
from p2pnode.store import PRUNE_BATCH
from p2pnode.wire.envelope import SignatureCache
from p2pnode.wire.reasons import Reason

log = logging.getLogger("p2pnode.jobs")

# How often the blob store's retention sweep and the pruning of state.db run.
HOUSEKEEPING_S = 60.0
_REQ_DONE = tuple(s.value for s in TERMINAL)
_WORK_DONE = tuple(s.value for s in WorkState if s not in WORK_OPEN)


class JobMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter("p2pnode_jobs_events", "Job events as requester and worker",
                              ["role", "event"], registry=registry)
        self.open = Gauge("p2pnode_jobs_open", "Open jobs this node requested",
                          registry=registry)
        self.running = Gauge("p2pnode_jobs_running", "Jobs this node is working on",
                             registry=registry)
        # Bounded resources: usage against limits, and what the limits did.
        self.held = Gauge("p2pnode_jobs_held", "Jobs held in memory (open and finished), by "
                          "role", ["role"], registry=registry)
        self.cap = Gauge("p2pnode_jobs_cap", "Most jobs held in memory, by role", ["role"],
                         registry=registry)
        self.forgotten = Counter("p2pnode_jobs_forgotten", "Finished jobs let go from memory, "
                                 "by role and why (retention, cap)", ["role", "why"],
                                 registry=registry)
        self.refused = Counter("p2pnode_jobs_refused_at_cap", "Jobs refused because the "
                               "market held its cap (requester: submissions; worker: listed "
                               "jobs not looked at)", ["role"], registry=registry)
        self.blob_bytes = Gauge("p2pnode_blobs_bytes", "Bytes in the blob store",
                                registry=registry)
        self.blob_quota = Gauge("p2pnode_blobs_quota_bytes", "The blob store's quota",
                                registry=registry)
        self.blob_count = Gauge("p2pnode_blobs_held", "Blobs in the blob store",
                                registry=registry)
        self.blob_evicted = Counter("p2pnode_blobs_evicted", "Blobs evicted, by why "
                                    "(expired, pressure)", ["why"], registry=registry)
        self.blob_refused = Counter("p2pnode_blobs_refused", "Blob puts refused: over the "
                                    "quota even after eviction", registry=registry)
        self.pruned = Counter("p2pnode_store_pruned", "Rows of state.db deleted by retention, "
                              "by table", ["table"], registry=registry)
        self.rows = Gauge("p2pnode_store_rows", "Rows of state.db's tables that retention "
                          "prunes, by table", ["table"], registry=registry)
        for role in ("requester", "worker"):
            for why in ("retention", "cap"):
                self.forgotten.labels(role=role, why=why)
            self.refused.labels(role=role)
        for why in ("expired", "pressure"):
            self.blob_evicted.labels(why=why)

    def count(self, role: str, ev: str) -> None:
        self.events.labels(role=role, event=ev).inc()

    def blobs_evicted(self, why: str, n: int) -> None:
        self.blob_evicted.labels(why=why).inc(n)

    def blob_put_refused(self, _size: int) -> None:
        self.blob_refused.inc()


class JobsService:
    """Routes each inbound ``/job/1`` exchange to the side of the market it is for."""

    def __init__(self, *, net: str, transport: Transport, requester: RequesterService,
                 worker: WorkerService, metrics: JobMetrics,
                 on_reject: Callable[[Reason], None],
                 verified: SignatureCache | None = None, retention_s: float = 86_400,
                 housekeeping_s: float = HOUSEKEEPING_S) -> None:
        self.net = net
        self.verified = verified if verified is not None else SignatureCache()  # ENV-12
        self.retention_s = retention_s
        self.housekeeping_s = housekeeping_s
        self._reported: dict[tuple[str, str], int] = {}
        self.transport = transport
        self.requester = requester
        self.worker = worker
        self.metrics = metrics
        self.on_reject = on_reject

    @property
    def jobs(self) -> dict[bytes, Any]:
        return self.requester.jobs

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.transport.serve_jobs(self.handle)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.requester.run)
            await nursery.start(self.worker.run)
            nursery.start_soon(self._gauges)
            nursery.start_soon(self._housekeeping)
            task_status.started()

    def usage(self) -> dict[str, dict[str, int]]:
        """What the market holds against its limits (``p2pnode status``)."""
        req, work, blobs = self.requester.machine, self.worker.machine, self.requester.blobs
        return {
            "blobs": {"bytes": blobs.usage, "quota": blobs.policy.quota_bytes},
            "requester_jobs": {"held": len(req.jobs), "cap": req.max_jobs},
            "worker_finished": {"held": work.finished, "cap": work.max_finished},
            "worker_seen": {"held": work.seen, "cap": MAX_SEEN},
        }

    def _delta(self, key: tuple[str, str], total: int) -> int:
        n = total - self._reported.get(key, 0)
        self._reported[key] = total
        return n

    def _update_gauges(self) -> None:
        m, req, work = self.metrics, self.requester.machine, self.worker.machine
        m.open.set(sum(1 for j in self.jobs.values() if not j.terminal))
        m.running.set(work.active)
        m.held.labels(role="requester").set(len(req.jobs))
        m.held.labels(role="worker").set(len(work.work))
        m.cap.labels(role="requester").set(req.max_jobs)
        m.cap.labels(role="worker").set(work.max_finished + work.concurrency)
        for role, forgotten in (("requester", req.forgotten), ("worker", work.forgotten)):
            for why, total in forgotten.items():
                if n := self._delta((role, why), total):
                    m.forgotten.labels(role=role, why=why).inc(n)
                    event(log, "jobs.forgotten", logging.INFO if why == "cap" else logging.DEBUG,
                          role=role, why=why, count=n)
        for role, total in (("requester", req.refused), ("worker", work.seen_full)):
            if n := self._delta((role, "refused"), total):
                m.refused.labels(role=role).inc(n)
                event(log, "jobs.cap.hit", logging.WARNING, role=role, count=n)
        blobs = self.requester.blobs
        m.blob_bytes.set(blobs.usage)
        m.blob_quota.set(blobs.policy.quota_bytes)

    async def _gauges(self) -> None:
        while True:
            self._update_gauges()
            await trio.sleep(1.0)

    async def _housekeeping(self) -> None:
        """The blob store's retention sweep and the pruning of state.db, off the event loop
        and in bounded batches, every ``housekeeping_s``."""
        blobs, store = self.requester.blobs, self.requester.store
        while True:
            await trio.sleep(self.housekeeping_s)
            await trio.to_thread.run_sync(blobs.collect)
            self.metrics.blob_count.set(await trio.to_thread.run_sync(blobs.count))
            cutoff = self.requester.clock.wall_ms() - int(self.retention_s * 1000)
            pruned: dict[str, int] = {}
            for table, states in (("req_jobs", _REQ_DONE), ("work_jobs", _WORK_DONE),
                                  ("peers", None)):
                while True:
                    n = await trio.to_thread.run_sync(store.prune, table, cutoff, states)
                    if n:
                        pruned[table] = pruned.get(table, 0) + n
                        self.metrics.pruned.labels(table=table).inc(n)
                    if n < PRUNE_BATCH:
                        break
            if pruned:
                event(log, "store.pruned", **pruned)
            for table, n in (await trio.to_thread.run_sync(store.row_counts)).items():
                self.metrics.rows.labels(table=table).set(n)

    async def handle(self, ex: Exchange, remote: bytes, first: bytes) -> None:
        """XCH-2, XCH-3: a first message that does not open, or is signed by another key
        than the stream's peer, is counted and gets no answer (no signature for garbage)."""
        r = route(first, remote, net=self.net, verified=self.verified)
        if isinstance(r, Drop):
            self.on_reject(r.reason)
            return
        rec = r.received
        msg, req = rec.msg, self.requester
        if isinstance(msg, JobOffer):
            await self.worker.on_offer(ex, rec)
        elif isinstance(msg, JobProbe):
            await self.worker.on_probe(ex, rec)
        elif isinstance(msg, JobQuery):
            ids = req.machine.on_query(msg.kinds, msg.resource_class)
            await ex.send(JobList(net=self.net, jobs=tuple(ids), ts=req.clock.wall_ms())
                          .seal(req.identity))
        elif isinstance(msg, JobGet):
            await ex.send(req.answer_get(msg.job))
        elif isinstance(msg, JobClaim):
            await ex.send(await req.answer_claim(rec.signer, msg))
        elif isinstance(msg, JobHeartbeat):
            await ex.send(req.answer_heartbeat(rec.signer, msg.job, msg.lease, msg.progress))
        elif isinstance(msg, JobResult):
            chain = committed_chain(msg.proof)
            commit = committed_root(msg.proof) or (chain.root if chain else b"")
            await ex.send(await req.answer_result(rec.signer, msg.job, msg.lease, msg.output,
                                                  msg.size, msg.compute_ms, commit, rec.raw))
        else:
            self.on_reject(Reason.UNKNOWN_TYPE)
            await ex.send(JobRefuse.make(self.net, b"", Reason.UNKNOWN_TYPE, msg.T,
                                         req.clock.wall_ms()).seal(req.identity))
