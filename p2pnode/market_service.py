"""The job market shell: runs the sans-IO market machines over libp2p, SQLite and threads.

One ``MarketService`` per node plays both roles:
- requester: persists each job before acknowledging it, publishes it in the DHT, provides
  its discovery key, offers it to matching workers from the capability table, answers
  claims, heartbeats and results, fetches and checks outputs, reassigns expired leases;
- worker: finds jobs (offers and DHT lookups), claims them within its concurrency bound,
  fetches inputs, executes outside the event loop thread, heartbeats, returns results.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from typing import Any

import trio

from p2pnode.blobs.store import BlobStore
from p2pnode.identity import peer_id_str
from p2pnode.jobs import discovery
from p2pnode.jobs.executors import get_executor
from p2pnode.jobs.executors.base import ExecError, Limits
from p2pnode.jobs.market import (
    Decided,
    Lease,
    Refuse,
    RequesterJob,
    Verify,
    WorkerPolicy,
    WorkerProfile,
)
from p2pnode.jobs.model import (
    CID_SIZE,
    MAX_DETAIL_LEN,
    NONCE_SIZE,
    T_CLAIM,
    T_GET,
    T_HEARTBEAT,
    T_LEASE,
    T_LIST,
    T_OFFER,
    T_QUERY,
    T_REFUSE,
    T_RESULT,
    T_VERDICT,
    JobSpec,
    Message,
    Requirements,
    SignedJob,
    open_message,
    seal_message,
)
from p2pnode.jobs.verify import check_output
from p2pnode.log import event
from p2pnode.net import dht as dhtx
from p2pnode.net.blob_protocol import fetch_blob_to_store, register_blob_protocol
from p2pnode.net.job_protocol import job_protocol_id, make_job_handler, open_exchange, request
from p2pnode.net.peering import reconnect
from p2pnode.net.streams import FramedStream
from p2pnode.wire.reasons import Reason, WireError

log = logging.getLogger("p2pnode.market")

TICK_S = 0.5
# After a refused offer, when to offer the same job to the same worker again.
OFFER_BACKOFF_MS = 5_000
OFFER_BUSY_BACKOFF_MS = 750
RESULT_TIMEOUT_S = 120.0
DHT_TIMEOUT_S = 8.0
BLOB_TIMEOUT_S = 60.0
# Fetching an output: transport failures are retried over a fresh connection; what the
# worker provably did wrong is not.
FETCH_ATTEMPTS = 3
WORKER_FAULTS = frozenset({Reason.HASH_MISMATCH, Reason.TOO_LARGE, Reason.BAD_FIELD,
                           Reason.UNKNOWN_FIELD})
# A job that a direct offer leased within this time is not put in the DHT (spec 04): the
# DHT path is for jobs the capability table could not place, and each put costs a lookup.
DHT_PUBLISH_DELAY_MS = 2_000
WORK_OPEN_STATES = ("leased", "fetching", "running", "submitting", "resumed")



@dataclass
class WorkItem:
    """A job this node works on (worker side)."""

    job: SignedJob
    lease: dict[str, Any]
    state: str = "leased"
    history: list[tuple[int, str, str]] = field(default_factory=list)
    output: bytes | None = None
    meta: dict[str, int | str] = field(default_factory=dict)


class MarketService:
    def __init__(self, node: Any) -> None:
        self.node = node
        cfg = node.config
        self.net: str = cfg.network
        self.identity = node.identity
        self.blobs = BlobStore(node.home / "blobs", node.home / "blobs.db",
                               max_blob_size=cfg.jobs_max_blob_bytes)
        self.jobs: dict[bytes, RequesterJob] = {}
        self.work: dict[bytes, WorkItem] = {}
        self.seen_jobs: dict[bytes, int] = {}  # job id -> ms until we look at it again
        self.offers: dict[tuple[bytes, str], int] = {}  # (job, worker peer) -> next try ms
        self._offering: set[bytes] = set()
        self._offer_inflight: set[str] = set()  # workers with an offer in flight
        self._worker_busy_until: dict[str, int] = {}
        self._provided: dict[str, int] = {}  # discovery key -> bucket provided
        self._published: set[bytes] = set()  # jobs put in the DHT by this process
        self._to_resume: list[WorkItem] = []
        self._job_lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self.policy: WorkerPolicy | None = None
        self.limits = Limits(
            max_input_bytes=cfg.jobs_max_blob_bytes, max_output_bytes=cfg.jobs_max_blob_bytes,
            wall_time_s=cfg.jobs_wall_time_s, wasm_fuel=cfg.jobs_wasm_fuel,
            wasm_memory_bytes=cfg.jobs_wasm_memory_bytes, matmul_max_n=cfg.jobs_matmul_max_n)
        m = node.metrics
        from prometheus_client import Counter, Gauge

        self.m_jobs = Counter("p2pnode_jobs_events", "Job events as requester and worker",
                              ["role", "event"], registry=m.registry)
        self.m_open = Gauge("p2pnode_jobs_open", "Open jobs this node requested",
                            registry=m.registry)
        self.m_running = Gauge("p2pnode_jobs_running", "Jobs this node is working on",
                               registry=m.registry)

    # -- helpers ------------------------------------------------------------------------

    def now(self) -> int:
        return int(self.node.now_ms())

    def _reject(self, reason: Reason) -> None:
        self.node.metrics.reject("job", reason)

    def _seal(self, t: str, body: dict[str, Any]) -> bytes:
        return seal_message(self.identity, t, body)

    def _refuse(self, job: bytes, reason: Reason, detail: str = "") -> bytes:
        # The detail is cut to its byte limit on a character boundary.
        short = detail.encode()[:MAX_DETAIL_LEN].decode("utf-8", "ignore")
        job = job if len(job) == CID_SIZE else b""
        return self._seal(T_REFUSE, {"net": self.net, "job": job, "reason": reason.value,
                                     "detail": short, "ts": self.now()})

    def _lease_msg(self, job: RequesterJob, lease: Lease) -> bytes:
        return self._seal(T_LEASE, {"net": self.net, "job": job.id, "worker": lease.worker,
                                    "lease": lease.number, "expires": lease.expires,
                                    "price": lease.price})

    def _persist(self, job: RequesterJob) -> None:
        self.node.store.save_req_job(job.id, job.raw, job.state.value, job.to_row(),
                                     job.spec.created, self.now())
        self.m_open.set(sum(1 for j in self.jobs.values() if not j.terminal))

    def _profile(self) -> WorkerProfile:
        hw = self.node.hardware
        cfg = self.node.config
        return WorkerProfile(
            kinds=frozenset(cfg.caps_kinds), prices=dict(cfg.caps_price),
            concurrency=cfg.jobs_concurrency, cores=hw.cores, mem=hw.mem,
            gpu_mem=max((g.mem for g in hw.gpus), default=0), gpus=len(hw.gpus))

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        stack = self.node.stack
        self.policy = WorkerPolicy(self._profile())
        dhtx.register_job_records(stack.dht, self.net, self.now, self._reject)
        stack.host.set_stream_handler(job_protocol_id(self.net),
                                      make_job_handler(self.net, self._handle, self._reject))
        self.blob_handler = register_blob_protocol(
            stack.host, self.blobs, self.net, lambda r: self.node.metrics.reject("blob", r))
        self._resume()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._tick_loop)
                nursery.start_soon(self._discovery_loop)
                for item in self._to_resume:
                    nursery.start_soon(self._work, item)
                self._to_resume.clear()
                task_status.started()
        finally:
            self._nursery = None
            self.blobs.close()

    def _resume(self) -> None:
        """Load our jobs from SQLite: open ones continue where they were (XCH-10)."""
        for job_id, raw, row, _created in self.node.store.req_jobs():
            sj = SignedJob.open(raw)
            self.jobs[job_id] = RequesterJob.from_row(job_id, sj.spec, raw, row)
        # Work we held when we stopped resumes while its lease may still be live; the first
        # heartbeat tells whether the requester still counts on us (WRK-9).
        now = self.now()
        assert self.policy is not None
        for job_id, raw, state, row in self.node.store.work_jobs(WORK_OPEN_STATES):
            lease = dict(row["lease"])
            for k in ("job", "worker"):
                lease[k] = bytes.fromhex(lease[k])
            history = [(int(a), str(b), str(c)) for a, b, c in row["history"]]
            if lease["expires"] > now and self.policy.take(job_id):
                item = WorkItem(job=SignedJob.open(raw), lease=lease, state=state,
                                history=history)
                self.work[job_id] = item
                self._set_work_state(item, "resumed", f"after a restart in state {state}")
                self._to_resume.append(item)
            else:
                row["history"].append([now, "abandoned", "restarted after the lease ran out"])
                self.node.store.save_work_job(job_id, raw, "abandoned", row, now)
        n_open = sum(1 for j in self.jobs.values() if not j.terminal)
        if self.jobs:
            event(log, "jobs.resumed", total=len(self.jobs), open=n_open)

    # -- requester: submit, publish, offer ----------------------------------------------

    def submit(self, kind: str, inputs: dict[str, bytes], params: dict[str, Any],
               req: Requirements, *, max_price: int | None = None, deadline_s: int | None = None,
               lease_s: int | None = None, redundancy: int = 1) -> RequesterJob:
        """Create, sign and persist a job; it is acknowledged once this returns."""
        cfg = self.node.config
        now = self.now()
        cids = {name: self.blobs.put(data) for name, data in inputs.items()}
        spec = JobSpec(
            net=self.net, kind=kind, inputs=tuple(sorted(cids.items())),
            params=tuple(sorted(params.items())), req=req,
            max_price=cfg.jobs_max_price if max_price is None else max_price,
            created=now, deadline=now + 1000 * (deadline_s or cfg.jobs_deadline_s),
            lease_s=lease_s or cfg.jobs_lease_s, redundancy=redundancy,
            nonce=os.urandom(NONCE_SIZE))
        raw = spec.seal(self.identity)
        sj = SignedJob.open(raw)  # the same checks every receiver runs
        job = RequesterJob.new(sj.id, sj.spec, raw, now)
        self.jobs[job.id] = job
        self._persist(job)
        self.m_jobs.labels(role="requester", event="submitted").inc()
        event(log, "job.submitted", job=job.id.hex(), kind=kind)
        self._dispatch_offers()
        return job

    async def _publish(self, job: RequesterJob) -> None:
        """Put the signed spec in the DHT (bounded, retried)."""
        key = discovery.job_record_key(job.id)
        for attempt in range(3):
            if job.terminal:
                return
            if await dhtx.put_value(self.node.stack.dht, key, job.raw, DHT_TIMEOUT_S):
                event(log, "job.dht.put", logging.DEBUG, job=job.id.hex(), attempt=attempt)
                return
            await trio.sleep(1 + attempt * 2)

    async def _provide(self) -> None:
        """Provide the discovery keys of our open jobs for the current bucket."""
        bucket = discovery.bucket_of(self.now())
        keys = {discovery.discovery_key(self.net, j.spec.kind, j.spec.req.resource_class,
                                        bucket)
                for j in self.jobs.values() if not j.terminal and j.needs_workers()}
        for key in keys:
            if self._provided.get(key) == bucket:
                continue
            self._provided[key] = bucket
            await dhtx.provide(self.node.stack.dht, key, DHT_TIMEOUT_S)

    async def _tick_loop(self) -> None:
        while True:
            now = self.now()
            for job in list(self.jobs.values()):
                if job.terminal:
                    continue
                before = (job.state, len(job.history))
                happened = job.on_tick(now)
                if (job.state, len(job.history)) != before:
                    self._persist(job)
                for h in happened:
                    self.m_jobs.labels(role="requester", event=h).inc()
                if job.terminal:
                    self._finished(job)
                    continue
                if (job.needs_workers() and job.id not in self._published
                        and (now - job.spec.created >= DHT_PUBLISH_DELAY_MS
                             or not self.node.config.jobs_offer)):
                    self._published.add(job.id)
                    assert self._nursery is not None
                    self._nursery.start_soon(self._publish, job)
            self._dispatch_offers()
            self.m_running.set(len(self.policy.active) if self.policy else 0)
            assert self._nursery is not None
            self._nursery.start_soon(self._provide)
            await trio.sleep(TICK_S)

    def _finished(self, job: RequesterJob) -> None:
        self.m_jobs.labels(role="requester", event=job.state.value).inc()
        event(log, "job.finished", job=job.id.hex(), state=job.state.value)

    def _candidates(self, job: RequesterJob) -> list[str]:
        """Workers from the capability table that meet the job (spec 04 §3.3, OFR-1)."""
        spec = job.spec
        now = self.now()
        excluded = {peer_id_str(w) for w in job.excluded_workers()}
        excluded |= {peer_id_str(le.worker) for le in job.live_leases()}
        out = []
        for e in self.node.table.live(now):
            ad = e.ad
            if e.peer_id == self.node.peer_id or e.peer_id in excluded:
                continue
            if spec.kind not in ad.kinds or dict(ad.price).get(spec.kind, 0) > spec.max_price:
                continue
            if ad.cores < spec.req.cores or ad.mem < spec.req.mem:
                continue
            if (spec.req.gpu and not ad.gpus) or ad.gpu_mem < spec.req.gpu_mem:
                continue
            if self.offers.get((job.id, e.peer_id), 0) > now:
                continue
            out.append(e.peer_id)
        random.shuffle(out)
        # Spread load: workers holding fewer of our leases first.
        busy: dict[str, int] = {}
        for j in self.jobs.values():
            for le in j.live_leases():
                p = peer_id_str(le.worker)
                busy[p] = busy.get(p, 0) + 1
        out.sort(key=lambda p: busy.get(p, 0))
        return out

    def _dispatch_offers(self) -> None:
        """Offer open jobs, oldest first, to free matching workers: at most one offer in
        flight per worker, and none to a worker that said it was busy a moment ago."""
        if self._nursery is None or not self.node.config.jobs_offer:
            return
        now = self.now()
        for job in sorted(self.jobs.values(), key=lambda j: j.spec.created):
            if job.terminal or job.id in self._offering or not job.needs_workers():
                continue
            peers = [p for p in self._candidates(job) if p not in self._offer_inflight
                     and self._worker_busy_until.get(p, 0) <= now]
            if not peers:
                continue
            peer = peers[0]
            self._offering.add(job.id)
            self._offer_inflight.add(peer)
            self._nursery.start_soon(self._offer, job, peer)

    async def _offer(self, job: RequesterJob, peer: str) -> None:
        self.offers[(job.id, peer)] = self.now() + OFFER_BACKOFF_MS
        try:
            await self._offer_to(job, peer)
        except (WireError, trio.TooSlowError, Exception) as e:
            event(log, "job.offer.failed", logging.DEBUG, job=job.id.hex(), peer=peer,
                  error=str(e))
        finally:
            self._offering.discard(job.id)
            self._offer_inflight.discard(peer)

    async def _offer_to(self, job: RequesterJob, peer: str) -> None:
        framed = await open_exchange(self.node.stack.host, peer, self.net)
        try:
            await framed.send(self._seal(T_OFFER, {"net": self.net, "spec": job.raw,
                                                   "ts": self.now()}))
            reply = open_message(await framed.receive(10.0), net=self.net,
                                 expected={T_CLAIM, T_REFUSE})
            if reply.t == T_REFUSE:
                if reply.body["reason"] == Reason.BUSY.value:
                    # A busy worker frees up soon: any job may try it again shortly.
                    self.offers.pop((job.id, peer), None)
                    self._worker_busy_until[peer] = self.now() + OFFER_BUSY_BACKOFF_MS
                return
            if peer_id_str(reply.signer) != peer or reply.job != job.id:
                raise WireError(Reason.SIGNER_MISMATCH, "claim not from the offered worker")
            await framed.send(await self._answer_claim(job, reply))
        finally:
            await framed.close()

    async def _answer_claim(self, job: RequesterJob, claim: Message) -> bytes:
        async with self._job_lock:
            decision = job.on_claim(claim.signer, int(claim.body["price"]), self.now())
            if isinstance(decision, Refuse):
                return self._refuse(job.id, decision.reason, decision.detail)
            self._persist(job)  # durable before the lease leaves
        self.m_jobs.labels(role="requester", event="leased").inc()
        return self._lease_msg(job, decision.lease)

    # -- the /job/1 handler -------------------------------------------------------------------

    async def _handle(self, framed: FramedStream, remote: bytes, msg: Message) -> None:
        if msg.t == T_OFFER:
            await self._on_offer(framed, msg)
            return
        if msg.t == T_QUERY:
            await framed.send(self._on_query(msg))
            return
        job = self.jobs.get(msg.job) if msg.t in (T_GET, T_CLAIM, T_HEARTBEAT,
                                                   T_RESULT) else None
        if job is None:
            reason = Reason.UNKNOWN_JOB if msg.t in (T_GET, T_CLAIM, T_HEARTBEAT,
                                                     T_RESULT) else Reason.UNKNOWN_TYPE
            self._reject(reason)
            await framed.send(self._refuse(msg.body.get("job", b""), reason))
            return
        if msg.t == T_GET:
            await framed.send(job.raw)
        elif msg.t == T_CLAIM:
            await framed.send(await self._answer_claim(job, msg))
        elif msg.t == T_HEARTBEAT:
            async with self._job_lock:
                d = job.on_heartbeat(msg.signer, int(msg.body["lease"]),
                                     int(msg.body["progress"]), self.now())
                if isinstance(d, Refuse):
                    self._reject(d.reason)
                    reply = self._refuse(job.id, d.reason, d.detail)
                else:
                    self._persist(job)
                    reply = self._lease_msg(job, d.lease)
            await framed.send(reply)
        elif msg.t == T_RESULT:
            await framed.send(await self._on_result(job, msg, remote))

    def _on_query(self, msg: Message) -> bytes:
        kinds = set(msg.body["kinds"])
        cls = msg.body["class"]
        ids = [j.id for j in self.jobs.values()
               if not j.terminal and j.needs_workers() and j.spec.kind in kinds
               and (cls == "gpu" or j.spec.req.resource_class == "cpu")][:64]
        return self._seal(T_LIST, {"net": self.net, "jobs": ids, "ts": self.now()})

    async def _on_result(self, job: RequesterJob, msg: Message, remote: bytes) -> bytes:
        number = int(msg.body["lease"])
        output = bytes(msg.body["output"])
        async with self._job_lock:
            compute = msg.body["meta"].get("elapsed_ms", 0)
            d = job.on_result(msg.signer, number, output, self.now(),
                              compute if isinstance(compute, int) and compute >= 0 else 0)
            if isinstance(d, Refuse):
                self._reject(d.reason)
                return self._refuse(job.id, d.reason, d.detail)
            self._persist(job)
        if isinstance(d, Decided):
            return self._verdict(job, d.lease)
        assert isinstance(d, Verify)
        ok, reason = await self._verify(job, output, peer_id_str(remote),
                                        int(msg.body["size"]))
        async with self._job_lock:
            lease = job.on_verified(number, ok, reason, self.now())
            self._persist(job)
        self.m_jobs.labels(role="requester", event="verified" if ok else "rejected").inc()
        if job.terminal:
            self._finished(job)
        return self._verdict(job, lease)

    async def _verify(self, job: RequesterJob, output: bytes, peer: str,
                      size: int) -> tuple[bool, str]:
        """Fetch the output (hash-checked) and apply the job's verification policy."""
        if size > self.node.config.jobs_max_blob_bytes:
            return False, Reason.TOO_LARGE.value
        last = Reason.NOT_FOUND
        for attempt in range(FETCH_ATTEMPTS):
            try:
                await fetch_blob_to_store(self.node.stack.host, peer, output, self.blobs,
                                          net=self.net,
                                          max_size=self.node.config.jobs_max_blob_bytes,
                                          timeout=BLOB_TIMEOUT_S)
                break
            except WireError as e:
                if e.reason in WORKER_FAULTS:
                    return False, e.reason.value
                last = e.reason
            except trio.TooSlowError:
                last = Reason.TRUNCATED
            # Not provably the worker's fault (a dead connection, a restart): reconnect to
            # where it advertises itself and try again.
            entry = self.node.table.get(peer)
            await reconnect(self.node.stack, peer, list(entry.ad.addrs) if entry else [])
            event(log, "job.output.refetch", logging.DEBUG, job=job.id.hex(), attempt=attempt,
                  reason=last.value)
        else:
            return False, last.value
        data = self.blobs.get(output)
        if data is None:
            return False, Reason.NOT_FOUND.value
        inputs = {name: self.blobs.get(c) for name, c in job.spec.inputs}
        verdict = await trio.to_thread.run_sync(check_output, job.spec, inputs, data)
        return (True, "") if verdict is None else (False, verdict.value)

    def _verdict(self, job: RequesterJob, lease: Lease) -> bytes:
        from p2pnode.jobs.market import LeaseState

        return self._seal(T_VERDICT, {
            "net": self.net, "job": job.id, "lease": lease.number, "worker": lease.worker,
            "output": lease.output or b"\x12\x20" + bytes(32),
            "accepted": lease.state is LeaseState.ACCEPTED, "reason": lease.reason,
            "ts": self.now()})

    # -- worker ---------------------------------------------------------------------------------

    async def _on_offer(self, framed: FramedStream, msg: Message) -> None:
        try:
            sj = SignedJob.open(bytes(msg.body["spec"]))
        except WireError as e:
            self._reject(e.reason)
            await framed.send(self._refuse(b"", e.reason, e.detail))
            return
        if sj.requester != msg.signer:
            self._reject(Reason.SIGNER_MISMATCH)
            await framed.send(self._refuse(sj.id, Reason.SIGNER_MISMATCH,
                                           "offer not from the job's requester"))
            return
        assert self.policy is not None
        why = self.policy.consider(sj.id, sj.spec, self.now(), self.net)
        if why is not None or not self.policy.take(sj.id):
            await framed.send(self._refuse(sj.id, why or Reason.BUSY))
            return
        try:
            await framed.send(self._claim(sj))
            lease = self._check_lease(sj, await framed.receive(10.0))
        except (WireError, trio.TooSlowError) as e:
            self.policy.release(sj.id)
            if isinstance(e, WireError):
                self._reject(e.reason)
            return
        except BaseException:
            self.policy.release(sj.id)
            raise
        if lease is None:
            self.policy.release(sj.id)
            return
        self._start_work(sj, lease)

    def _claim(self, sj: SignedJob) -> bytes:
        assert self.policy is not None
        return self._seal(T_CLAIM, {"net": self.net, "job": sj.id,
                                    "price": self.policy.price_for(sj.spec.kind),
                                    "ts": self.now()})

    def _check_lease(self, sj: SignedJob, data: bytes) -> dict[str, Any] | None:
        """A lease must be signed by the job's requester, for this job and this worker."""
        msg = open_message(data, net=self.net, expected={T_LEASE, T_REFUSE})
        if msg.t == T_REFUSE:
            return None
        if msg.signer != sj.requester:
            raise WireError(Reason.SIGNER_MISMATCH, "lease not signed by the requester")
        if msg.job != sj.id or msg.body["worker"] != self.identity.public_key:
            raise WireError(Reason.BAD_FIELD, "lease for another job or worker")
        return dict(msg.body)

    def _start_work(self, sj: SignedJob, lease: dict[str, Any]) -> None:
        item = WorkItem(job=sj, lease=lease)
        item.history.append((self.now(), "leased", f"lease {lease['lease']}"))
        self.work[sj.id] = item
        self._save_work(item)
        self.m_jobs.labels(role="worker", event="leased").inc()
        assert self._nursery is not None
        self._nursery.start_soon(self._work, item)

    def _save_work(self, item: WorkItem) -> None:
        row = {"lease": {k: (v.hex() if isinstance(v, bytes) else v)
                         for k, v in item.lease.items()},
               "history": item.history,
               "output": item.output.hex() if item.output else None,
               "requester": peer_id_str(item.job.requester)}
        self.node.store.save_work_job(item.job.id, item.job.raw, item.state, row, self.now())

    def _set_work_state(self, item: WorkItem, state: str, detail: str = "") -> None:
        item.state = state
        item.history.append((self.now(), state, detail))
        self._save_work(item)

    async def _work(self, item: WorkItem) -> None:
        sj = item.job
        requester = peer_id_str(sj.requester)
        assert self.policy is not None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._heartbeats, item, nursery.cancel_scope)
                result = await self._execute(item, requester)
                nursery.cancel_scope.cancel()
            if result is None:
                return
            self._set_work_state(item, "submitting", result.hex()[:16])
            verdict = await self._submit_result(item, requester)
            self._set_work_state(item, verdict)
            self.m_jobs.labels(role="worker", event=verdict).inc()
        except Exception as e:  # a failed job must not stop the node
            self._set_work_state(item, "failed", f"{type(e).__name__}: {e}")
            self.m_jobs.labels(role="worker", event="failed").inc()
        finally:
            self.policy.release(sj.id)

    async def _execute(self, item: WorkItem, requester: str) -> bytes | None:
        sj = item.job
        inputs: dict[str, bytes] = {}
        self._set_work_state(item, "fetching")
        for name, c in sj.spec.inputs:
            await fetch_blob_to_store(self.node.stack.host, requester, c, self.blobs,
                                      net=self.net, max_size=self.limits.max_input_bytes,
                                      timeout=BLOB_TIMEOUT_S)
            data = self.blobs.get(c)
            if data is None:
                raise WireError(Reason.NOT_FOUND, "input vanished from the blob store")
            inputs[name] = data
        self._set_work_state(item, "running")
        executor = get_executor(sj.spec.kind, device=self.node.config.jobs_device)
        try:
            res = await trio.to_thread.run_sync(
                executor.run, inputs, dict(sj.spec.params), self.limits,
                abandon_on_cancel=True)  # type: ignore[call-arg]
        except ExecError as e:
            self._set_work_state(item, "exec_failed", f"{e.reason.value}: {e.detail}")
            self.m_jobs.labels(role="worker", event="exec_failed").inc()
            return None
        item.output = self.blobs.put(res.output)
        item.meta = {k: v for k, v in res.meta.items()
                     if isinstance(v, int) or (isinstance(v, str) and len(v) <= 64)}
        return item.output

    async def _heartbeats(self, item: WorkItem, scope: trio.CancelScope) -> None:
        sj = item.job
        requester = peer_id_str(sj.requester)
        interval = max(0.5, sj.spec.lease_s / 3)
        failures = 0
        while True:
            await trio.sleep(interval)
            hb = self._seal(T_HEARTBEAT, {"net": self.net, "job": sj.id,
                                          "lease": item.lease["lease"], "progress": 0,
                                          "ts": self.now()})
            try:
                reply = open_message(await request(self.node.stack.host, requester, self.net,
                                                   hb), net=self.net,
                                     expected={T_LEASE, T_REFUSE})
            except (WireError, trio.TooSlowError, Exception):
                failures += 1
                continue
            try:
                renewed = self._check_lease(sj, reply.raw)
            except WireError as e:
                self._reject(e.reason)
                failures += 1
                continue
            if renewed is None or renewed["lease"] != item.lease["lease"]:
                # Lost the lease (expired, reassigned, job over): stop working on it.
                self._set_work_state(item, "abandoned", str(reply.body.get("reason")))
                scope.cancel()
                return
            item.lease["expires"] = renewed["expires"]

    async def _submit_result(self, item: WorkItem, requester: str) -> str:
        sj = item.job
        assert item.output is not None
        size = len(self.blobs.get(item.output) or b"")
        msg = self._seal(T_RESULT, {
            "net": self.net, "job": sj.id, "lease": item.lease["lease"], "output": item.output,
            "size": size, "proof": {}, "meta": dict(list(item.meta.items())[:16]),
            "ts": self.now()})
        reply = open_message(await request(self.node.stack.host, requester, self.net, msg,
                                           timeout=RESULT_TIMEOUT_S),
                             net=self.net, expected={T_VERDICT, T_REFUSE})
        if reply.signer != sj.requester:
            raise WireError(Reason.SIGNER_MISMATCH, "verdict not from the requester")
        if reply.t == T_REFUSE:
            return "refused"
        return "accepted" if reply.body["accepted"] else "rejected"

    async def _discovery_loop(self) -> None:
        """Pull path: find requesters with open jobs in the DHT and claim what fits."""
        interval = self.node.config.jobs_discovery_interval_s
        await trio.sleep(random.uniform(0, interval))
        while True:
            assert self.policy is not None
            if self.policy.free > 0:
                try:
                    await self._discover_once()
                except Exception as e:  # discovery is best effort; offers still arrive
                    event(log, "job.discovery.error", logging.DEBUG, error=str(e))
            await trio.sleep(interval * random.uniform(0.8, 1.2))

    async def _discover_once(self) -> int:
        assert self.policy is not None
        now = self.now()
        keys = discovery.lookup_keys(self.net, sorted(self.policy.profile.kinds),
                                     self.policy.profile.resource_classes, now)
        providers: dict[str, Any] = {}
        for key in keys:
            for info in await dhtx.find_providers(self.node.stack.dht, key, DHT_TIMEOUT_S):
                providers.setdefault(info.peer_id.to_base58(), info)
        providers.pop(self.node.peer_id, None)
        claimed = 0
        for peer, info in providers.items():
            if self.policy.free <= 0:
                break
            try:
                with trio.fail_after(5):
                    await self.node.stack.host.connect(info)
                q = self._seal(T_QUERY, {"net": self.net,
                                         "kinds": sorted(self.policy.profile.kinds),
                                         "class": self.policy.profile.resource_classes[-1],
                                         "ts": self.now()})
                reply = open_message(await request(self.node.stack.host, peer, self.net, q),
                                     net=self.net, expected={T_LIST, T_REFUSE})
            except (WireError, trio.TooSlowError, Exception):
                continue
            if reply.t != T_LIST or peer_id_str(reply.signer) != peer:
                continue
            for job_id in reply.body["jobs"]:
                if self.policy.free <= 0:
                    break
                if job_id in self.work or self.seen_jobs.get(job_id, 0) > self.now():
                    continue
                self.seen_jobs[job_id] = self.now() + 10_000
                if await self._try_claim(job_id, peer):
                    claimed += 1
        return claimed

    async def _try_claim(self, job_id: bytes, requester: str) -> bool:
        assert self.policy is not None
        raw = await dhtx.get_value(self.node.stack.dht, discovery.job_record_key(job_id),
                                   DHT_TIMEOUT_S)
        sj = None
        if raw is not None:
            verdict, sj = discovery.validate_job_record(discovery.job_record_key(job_id), raw,
                                                        net=self.net, now_ms=self.now())
            if not verdict.ok:
                self._reject(verdict.reason)  # type: ignore[union-attr]
                sj = None
        if sj is None:  # the DHT did not have it (yet): ask the requester
            get = self._seal(T_GET, {"net": self.net, "job": job_id})
            try:
                raw = await request(self.node.stack.host, requester, self.net, get)
                verdict, sj = discovery.validate_job_record(
                    discovery.job_record_key(job_id), raw, net=self.net, now_ms=self.now())
            except (WireError, trio.TooSlowError, Exception):
                return False
            if sj is None:
                return False
        if peer_id_str(sj.requester) != requester:
            self._reject(Reason.SIGNER_MISMATCH)
            return False
        if self.policy.consider(sj.id, sj.spec, self.now(), self.net) is not None:
            return False
        if not self.policy.take(sj.id):
            return False
        try:
            reply = await request(self.node.stack.host, requester, self.net, self._claim(sj))
            lease = self._check_lease(sj, reply)
        except (WireError, trio.TooSlowError, Exception):
            self.policy.release(sj.id)
            return False
        if lease is None:
            self.policy.release(sj.id)
            return False
        self._start_work(sj, lease)
        return True

    # -- admin API views ----------------------------------------------------------------------

    def job_summary(self, job: RequesterJob) -> dict[str, Any]:
        from p2pnode.jobs.market import LeaseState

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
            "output_path": str(self.blobs.path(out)) if out and self.blobs.has(out) else None,
        }

    def job_detail(self, job: RequesterJob) -> dict[str, Any]:
        d = self.job_summary(job)
        d["spec"] = {
            "inputs": {k: v.hex() for k, v in job.spec.inputs},
            "params": {k: (v.hex() if isinstance(v, bytes) else v) for k, v in job.spec.params},
            "req": job.spec.req.to_body(), "max_price": job.spec.max_price,
            "lease_s": job.spec.lease_s, "redundancy": job.spec.redundancy,
            "requester": self.node.peer_id,
        }
        d["leases"] = [dict(le.to_row(), worker=peer_id_str(le.worker))
                       for le in job.leases.values()]
        d["history"] = [{"ts_ms": ts, "event": ev, "detail": det}
                        for ts, ev, det in job.history]
        return d

    def work_summary(self) -> list[dict[str, Any]]:
        return [{"id": jid.hex(), "state": w.state, "kind": w.job.spec.kind,
                 "requester": peer_id_str(w.job.requester)} for jid, w in self.work.items()]

    def find_job(self, prefix: str) -> RequesterJob:
        prefix = prefix.lower()
        hits = [j for j in self.jobs.values() if j.id.hex().startswith(prefix)
                or j.id.hex()[4:].startswith(prefix)]
        if not hits:
            raise KeyError(f"no job {prefix}")
        if len(hits) > 1:
            raise KeyError(f"job id prefix {prefix} is ambiguous")
        return hits[0]

