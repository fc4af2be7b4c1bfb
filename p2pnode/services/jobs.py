"""The job market of one node: the ``/job/1`` dispatcher over the requester and worker
shells, and their metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge

from p2pnode.jobs.messages import (
    Drop,
    JobClaim,
    JobGet,
    JobHeartbeat,
    JobList,
    JobOffer,
    JobQuery,
    JobRefuse,
    JobResult,
    route,
)
from p2pnode.ports import Exchange, Transport
from p2pnode.services.requester import RequesterService
from p2pnode.services.worker import WorkerService
from p2pnode.wire.envelope import SignatureCache
from p2pnode.wire.reasons import Reason

log = logging.getLogger("p2pnode.jobs")


class JobMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter("p2pnode_jobs_events", "Job events as requester and worker",
                              ["role", "event"], registry=registry)
        self.open = Gauge("p2pnode_jobs_open", "Open jobs this node requested",
                          registry=registry)
        self.running = Gauge("p2pnode_jobs_running", "Jobs this node is working on",
                             registry=registry)

    def count(self, role: str, ev: str) -> None:
        self.events.labels(role=role, event=ev).inc()


class JobsService:
    """Routes each inbound ``/job/1`` exchange to the side of the market it is for."""

    def __init__(self, *, net: str, transport: Transport, requester: RequesterService,
                 worker: WorkerService, metrics: JobMetrics,
                 on_reject: Callable[[Reason], None],
                 verified: SignatureCache | None = None) -> None:
        self.net = net
        self.verified = verified if verified is not None else SignatureCache()  # ENV-12
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
            task_status.started()

    async def _gauges(self) -> None:
        while True:
            self.metrics.open.set(sum(1 for j in self.jobs.values() if not j.terminal))
            self.metrics.running.set(self.worker.machine.active)
            await trio.sleep(1.0)

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
            await ex.send(await req.answer_result(rec.signer, msg.job, msg.lease, msg.output,
                                                  msg.size, msg.compute_ms))
        else:
            self.on_reject(Reason.UNKNOWN_TYPE)
            await ex.send(JobRefuse.make(self.net, b"", Reason.UNKNOWN_TYPE, msg.T,
                                         req.clock.wall_ms()).seal(req.identity))
