"""The requester's shell: carries out the effects of ``p2pnode.jobs.requester.Requester``.

It persists jobs (off the event loop, before the message that reveals a change, XCH-9),
makes offers, fetches and checks outputs, puts DHT records and provides discovery keys,
and arms one timer from the machine's ``next_deadline``.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from p2pnode.blobs.store import BlobStore
from p2pnode.identity import Identity, peer_id_str
from p2pnode.jobs.market import Decided, Lease, LeaseState, Refuse, RequesterJob
from p2pnode.jobs.matching import Capacity
from p2pnode.jobs.messages import (
    NO_OUTPUT,
    JobClaim,
    JobLease,
    JobOffer,
    JobRefuse,
    JobVerdict,
    decode,
)
from p2pnode.jobs.model import NONCE_SIZE, T_CLAIM, T_REFUSE, JobSpec, Requirements, SignedJob
from p2pnode.jobs.requester import (
    JOB_RETENTION_MS,
    MAX_JOBS,
    Candidate,
    CheckOutput,
    Effect,
    Finished,
    Offer,
    Persist,
    Provide,
    PutRecord,
    Requester,
)
from p2pnode.jobs.verify import Outcome, judge_output
from p2pnode.log import event
from p2pnode.ports import Exchange, Transport, TransportError
from p2pnode.services.clock import LocalClock
from p2pnode.services.step_disputes import ReportFraud, StepDisputes, disputed
from p2pnode.services.verification import fetch_output
from p2pnode.store import NodeStore
from p2pnode.wire.cid import cid_of
from p2pnode.wire.reasons import Reason, WireError

log = logging.getLogger("p2pnode.requester")

DHT_TIMEOUT_S = 8.0
# Signed results kept while they are judged (at most 2 KiB each, JOB-1): a fraud proof
# quotes the one it proves wrong.
MAX_HELD_RESULTS = 4096
EXCHANGE_TIMEOUT_S = 10.0
DHT_PUT_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class RequesterSettings:
    net: str
    offers: bool = True
    max_blob_bytes: int = 64 << 20
    max_price: int = 10_000
    lease_s: int = 30
    deadline_s: int = 600
    retention_ms: int = JOB_RETENTION_MS
    max_jobs: int = MAX_JOBS


Count = Callable[[str, str], None]  # (role, event)


class RequesterService:
    def __init__(self, *, identity: Identity, transport: Transport, clock: LocalClock,
                 rng: random.Random, store: NodeStore, blobs: BlobStore,
                 settings: RequesterSettings, table: Callable[[], Sequence[Candidate]],
                 capacity_of: Callable[[str], Capacity | None],
                 addrs_of: Callable[[str], list[str]], count: Count,
                 on_reject: Callable[[Reason], None]) -> None:
        self.identity = identity
        self.transport = transport
        self.clock = clock
        self.store = store
        self.blobs = blobs
        self.s = settings
        self.net = settings.net
        self.table = table
        self.capacity_of = capacity_of
        self.addrs_of = addrs_of
        self.count = count
        self.on_reject = on_reject
        self.machine = Requester(self.net, rng=rng, offers=settings.offers,
                                 max_output_bytes=settings.max_blob_bytes,
                                 retention_ms=settings.retention_ms,
                                 max_jobs=settings.max_jobs)
        self._nursery: trio.Nursery | None = None
        self._wake = trio.Event()
        self._persist_lock = trio.Lock()
        self._judged: dict[tuple[bytes, int], trio.Event] = {}
        self._changed: dict[bytes, trio.Event] = {}  # jobs someone waits on (changed)
        self._results: dict[tuple[bytes, int], bytes] = {}  # signed results being judged
        self._secret: bytes | None = None  # PRF-3, derived on the first check
        # DSP-6: step results of jobs run by two or more workers, compared and disputed.
        self.steps = StepDisputes(identity=identity, net=self.net, transport=transport,
                                  clock=clock, blobs=blobs,
                                  max_blob_bytes=settings.max_blob_bytes,
                                  jobs=lambda: self.jobs, changed=self.changed,
                                  report=lambda: self.report_fraud, count=count)
        # Set by the node: publishes a fraud proof on the fraud topic (FRD).
        self.report_fraud: ReportFraud | None = None
        # Set by the node: hands an accepted lease's receipt, with its job, to the ledger.
        self.on_receipt: Callable[[bytes, bytes], Awaitable[object]] | None = None
        self.fraud_too_large = 0

    @property
    def jobs(self) -> dict[bytes, RequesterJob]:
        return self.machine.jobs

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._resume()
            nursery.start_soon(self._timer_loop)
            task_status.started()

    async def _resume(self) -> None:
        """XCH-10: jobs continue from storage; wall-clock rows move onto the timeline."""
        shift = self.clock.now_ms() - self.clock.wall_ms()
        rows = await trio.to_thread.run_sync(self.store.req_jobs)
        effects: list[Effect] = []
        for job_id, raw, row, _created in rows:
            sj = SignedJob.open(raw)
            job = RequesterJob.from_row(job_id, sj.spec, raw, row, shift)
            if not job.terminal:
                self._pin(job)
            effects += self.machine.add(job, self.clock.now_ms(), resumed=True)
        if rows:
            event(log, "jobs.resumed", total=len(rows),
                  open=sum(1 for j in self.jobs.values() if not j.terminal))
        await self._apply(effects)

    async def _timer_loop(self) -> None:
        while True:
            now, wall = self.clock.now_ms(), self.clock.wall_ms()
            await self._apply(self.machine.on_timer(now, wall))
            if self.machine.wants_offers():
                await self._apply(list(self.machine.offers(self.table(), now)))
            due = self.machine.next_deadline(now, wall)
            with trio.move_on_at(self.clock.trio_deadline(due) if due is not None
                                 else trio.current_time() + 3600):
                await self._wake.wait()
            self._wake = trio.Event()

    def wake(self) -> None:
        self._wake.set()

    # -- blobs an open job needs (spec 05 §4.4) ----------------------------------------

    def _pin(self, job: RequesterJob, *more: bytes) -> None:
        """Its inputs, and the outputs it has or is checking, stay in the store while the
        job is open; ``Finished`` lets them go (the retention time then applies)."""
        outputs = [le.output for le in job.leases.values() if le.output is not None]
        self.blobs.pin(("req", job.id), [*(c for _, c in job.spec.inputs), *outputs, *more])

    # -- effects ------------------------------------------------------------------------

    async def _apply(self, effects: Sequence[Effect]) -> None:
        assert self._nursery is not None
        for e in effects:
            if isinstance(e, Persist | Finished):
                self._notify(e.job)
            if isinstance(e, Persist):
                await self._persist(e.job)
            elif isinstance(e, Offer):
                self._nursery.start_soon(self._offer, e)
            elif isinstance(e, CheckOutput):
                job = self.jobs.get(e.job)
                if job is not None:
                    self._pin(job, e.output)
                self._nursery.start_soon(self._verify, e)
            elif isinstance(e, PutRecord):
                self._nursery.start_soon(self._put, e)
            elif isinstance(e, Provide):
                self._nursery.start_soon(self.transport.provide, e.key, DHT_TIMEOUT_S)
            elif isinstance(e, Finished):
                self.blobs.unpin(("req", e.job))
                self.steps.forget(e.job)
                job = self.jobs.get(e.job)
                state = job.state.value if job is not None else "forgotten"
                self.count("requester", state)
                event(log, "job.finished", job=e.job.hex(), state=state)
        if effects:
            self.wake()

    def changed(self, job_id: bytes) -> trio.Event:
        """Set at the job's next change of state or history, or at the next bar (FRD-7)."""
        return self._changed.setdefault(job_id, trio.Event())

    def _notify(self, job_id: bytes) -> None:
        ev = self._changed.pop(job_id, None)
        if ev is not None:
            ev.set()

    async def _persist(self, job_id: bytes) -> None:
        async with self._persist_lock:
            job = self.jobs.get(job_id)
            if job is None:  # forgotten meanwhile: it was terminal and its row is written
                return
            shift = self.clock.wall_ms() - self.clock.now_ms()
            row, state = job.to_row(shift), job.state.value
            await trio.to_thread.run_sync(self.store.save_req_job, job.id, job.raw, state,
                                          row, job.spec.created, self.clock.wall_ms())

    async def _put(self, e: PutRecord) -> None:
        for attempt in range(DHT_PUT_ATTEMPTS):  # DHT-7
            job = self.jobs.get(e.job)
            if job is None or job.terminal:
                return
            if await self.transport.dht_put(e.key, e.value, DHT_TIMEOUT_S):
                return
            await trio.sleep(1 + attempt * 2)

    # -- submit -------------------------------------------------------------------------

    async def submit(self, kind: str, inputs: dict[str, bytes], params: dict[str, Any],
                     req: Requirements, *, max_price: int | None = None,
                     deadline_s: int | None = None, lease_s: int | None = None,
                     redundancy: int = 1,
                     verify: dict[str, Any] | None = None) -> RequesterJob:
        """Create, sign and persist a job; it is acknowledged once this returns. Refused
        (WireError ``limit_exceeded``) while the machine holds its cap of open jobs, and
        (``StoreFull``) when its inputs do not fit in the blob store."""
        if self.machine.room() is not None:  # counted by the machine (JobMetrics.refused)
            event(log, "jobs.cap.refused", logging.WARNING, held=len(self.jobs),
                  cap=self.machine.max_jobs)
            raise WireError(Reason.LIMIT_EXCEEDED,
                            "%d open jobs: the cap of this node" % len(self.jobs))
        owner = ("submit", os.urandom(8))
        try:
            cids = {name: await trio.to_thread.run_sync(cid_of, data)
                    for name, data in inputs.items()}
            self.blobs.pin(owner, cids.values())  # before the puts: none evicts another
            for data in inputs.values():
                await trio.to_thread.run_sync(self.blobs.put, data)
            job = await self._create(kind, cids, params, req, max_price, deadline_s,
                                     lease_s, redundancy, verify or {})
        finally:
            self.blobs.unpin(owner)
        return job

    async def _create(self, kind: str, cids: dict[str, bytes], params: dict[str, Any],
                      req: Requirements, max_price: int | None, deadline_s: int | None,
                      lease_s: int | None, redundancy: int,
                      verify: dict[str, Any]) -> RequesterJob:
        wall = self.clock.wall_ms()
        spec = JobSpec(
            net=self.net, kind=kind, inputs=tuple(sorted(cids.items())),
            params=tuple(sorted(params.items())), req=req,
            max_price=self.s.max_price if max_price is None else max_price,
            created=wall, deadline=wall + 1000 * (deadline_s or self.s.deadline_s),
            lease_s=lease_s or self.s.lease_s, redundancy=redundancy,
            verify=tuple(sorted(verify.items())),
            nonce=os.urandom(NONCE_SIZE))  # JOB-5: a secure source, never the rng
        sj = SignedJob.open(spec.seal(self.identity))  # the same checks every receiver runs
        now = self.clock.now_ms()
        job = RequesterJob.new(sj.id, sj.spec, sj.raw, now, self.clock.from_wall(spec.deadline))
        self._pin(job)
        await self._apply(self.machine.add(job, now))
        self.count("requester", "submitted")
        event(log, "job.submitted", job=job.id.hex(), kind=kind)
        return job

    # -- exchanges ----------------------------------------------------------------------

    def _refuse(self, job: bytes, reason: Reason, detail: str = "") -> bytes:
        return JobRefuse.make(self.net, job, reason, detail, self.clock.wall_ms()).seal(
            self.identity)

    def _lease_msg(self, job_id: bytes, lease: Lease) -> bytes:
        return JobLease(net=self.net, job=job_id, worker=lease.worker, lease=lease.number,
                        expires=self.clock.to_wall(lease.expires),
                        price=lease.price).seal(self.identity)

    def _verdict(self, job_id: bytes, lease: Lease) -> bytes:
        return JobVerdict(net=self.net, job=job_id, lease=lease.number, worker=lease.worker,
                          output=lease.output or NO_OUTPUT,
                          accepted=lease.state is LeaseState.ACCEPTED, reason=lease.reason,
                          ts=self.clock.wall_ms()).seal(self.identity)

    async def answer_claim(self, worker: bytes, claim: JobClaim) -> bytes:
        peer = peer_id_str(worker)
        d, effects = self.machine.on_claim(claim.job, worker, claim.price,
                                           self.clock.now_ms(), self.capacity_of(peer))
        await self._apply(effects)  # durable before the lease leaves
        if isinstance(d, Refuse):
            self.on_reject(d.reason)
            return self._refuse(claim.job, d.reason, d.detail)
        if effects:
            self.count("requester", "leased")
        return self._lease_msg(claim.job, d.lease)

    def answer_heartbeat(self, worker: bytes, job: bytes, number: int, progress: int) -> bytes:
        d = self.machine.on_heartbeat(job, worker, number, progress, self.clock.now_ms())
        self.wake()
        if isinstance(d, Refuse):
            self.on_reject(d.reason)
            return self._refuse(job, d.reason, d.detail)
        return self._lease_msg(job, d.lease)

    async def answer_result(self, worker: bytes, job_id: bytes, number: int, output: bytes,
                            size: int, compute_ms: int, commit: bytes = b"",
                            raw: bytes = b"") -> bytes:
        if raw and len(self._results) < MAX_HELD_RESULTS:
            # The signed result, kept while it is judged: a fraud proof quotes it (FRD-2).
            self._results[(job_id, number)] = raw
            job = self.jobs.get(job_id)
            if job is not None and disputed(job.spec):
                self.steps.keep(job_id, number, raw)
        d, effects = self.machine.on_result(job_id, worker, number, output, size,
                                            self.clock.now_ms(), compute_ms, commit)
        await self._apply(effects)
        if isinstance(d, Refuse):
            self.on_reject(d.reason)
            return self._refuse(job_id, d.reason, d.detail)
        if isinstance(d, Decided):
            return self._verdict(job_id, d.lease)
        # Verify or Await: the check runs in its own task; this exchange waits for it, and
        # a worker whose stream broke sends the result again and waits here anew.
        judged = self._judged.setdefault((job_id, number), trio.Event())
        with trio.move_on_at(self.clock.trio_deadline(d.lease.verify_by) + 1):
            await judged.wait()
        lease = self.jobs[job_id].leases[number]
        if lease.state is LeaseState.VERIFYING:
            return self._refuse(job_id, Reason.BUSY, "still verifying")
        return self._verdict(job_id, lease)

    def answer_get(self, job_id: bytes) -> bytes:
        raw = self.machine.spec_of(job_id)
        if raw is None:
            self.on_reject(Reason.UNKNOWN_JOB)
            return self._refuse(job_id, Reason.UNKNOWN_JOB)
        return raw

    # -- offers (OFR-3) -------------------------------------------------------------------

    async def _offer(self, o: Offer) -> None:
        busy = False
        job = self.jobs[o.job]
        try:
            ex = await self.transport.open_job(o.worker)
            try:
                busy = await self._offer_on(ex, job, o.worker)
            finally:
                await ex.close()
        except (WireError, trio.TooSlowError, TransportError) as e:
            event(log, "job.offer.failed", logging.DEBUG, job=o.job.hex(), peer=o.worker,
                  error=str(e))
        finally:
            self.machine.on_offer_done(o.job, o.worker, self.clock.now_ms(), busy)
            self.wake()

    async def _offer_on(self, ex: Exchange, job: RequesterJob, peer: str) -> bool:
        await ex.send(JobOffer(net=self.net, spec=job.raw, ts=self.clock.wall_ms())
                      .seal(self.identity))
        reply = decode(await ex.receive(EXCHANGE_TIMEOUT_S), net=self.net,
                       expected={T_CLAIM, T_REFUSE})
        if isinstance(reply.msg, JobRefuse):
            return reply.msg.reason == Reason.BUSY.value
        assert isinstance(reply.msg, JobClaim)
        if peer_id_str(reply.signer) != peer or reply.msg.job != job.id:
            self.on_reject(Reason.SIGNER_MISMATCH)  # XCH-3
            return False
        await ex.send(await self.answer_claim(reply.signer, reply.msg))
        return False

    # -- verification (VER-1 .. VER-3, LEASE-12) ------------------------------------------

    async def _verify(self, c: CheckOutput) -> None:
        result: tuple[bool, str, bool] | None = None
        with trio.move_on_at(self.clock.trio_deadline(c.by)):
            result = await self._fetch_and_check(c)
        now = self.clock.now_ms()
        if result is not None:
            ok, reason, checked = result
            # RCP-1: the receipt is durable before the acceptance is (the job's row), and so
            # before the verdict leaves; if the lease is not accepted after all (its
            # verification deadline struck meanwhile), the receipt is taken back.
            receipt = await self._receipt(c) if ok else None
            lease, effects = self.machine.on_checked(c.job, c.lease, ok, reason,
                                                     self.clock.now_ms(), checked)
            if receipt is not None and (lease is None or lease.state is not LeaseState.ACCEPTED):
                await trio.to_thread.run_sync(self.store.delete_receipt, c.job, c.lease)
                receipt = None
            await self._apply(effects)
            job = self.jobs.get(c.job)
            if receipt is not None and job is not None and self.on_receipt is not None:
                await self.on_receipt(receipt, job.raw)
            self.count("requester", "verified" if ok else "rejected")
        else:  # out of time: the machine judges it at its deadline (LEASE-12)
            await self._apply(self.machine.on_timer(now, self.clock.wall_ms()))
        self._results.pop((c.job, c.lease), None)
        self._judged.pop((c.job, c.lease), trio.Event()).set()

    async def _receipt(self, c: CheckOutput) -> bytes | None:
        from p2pnode.proofs.receipts import Receipt, verified_by

        job = self.jobs.get(c.job)
        lease = job.leases.get(c.lease) if job is not None else None
        if job is None or lease is None or lease.output is None or \
                lease.state is not LeaseState.VERIFYING:
            return None
        r = Receipt(net=self.net, job=c.job, lease=lease.number, worker=lease.worker,
                    output=lease.output, price=lease.price,
                    verified=verified_by(job.spec.kind), ts=self.clock.wall_ms())
        raw = r.seal(self.identity)
        raw = await trio.to_thread.run_sync(self.store.save_receipt, cid_of(raw), c.job,
                                            lease.number, raw, r.ts)
        self.count("requester", "receipt")
        return raw

    def bar(self, cheater: bytes, job: bytes, until_wall: int) -> None:
        """FRD-7: a valid fraud proof (ours or gossiped) bars ``cheater`` from our leases."""
        now = self.clock.now_ms()
        self.machine.bar(cheater, job, now + max(0, until_wall - self.clock.wall_ms()), now)
        for waited in list(self._changed):  # a bar may decide what someone waits for
            self._notify(waited)

    async def _fetch_and_check(self, c: CheckOutput) -> tuple[bool, str, bool]:
        unfetched = await fetch_output(self.transport, self.blobs, c, self.s.max_blob_bytes,
                                       self.addrs_of)
        if unfetched is not None:
            return False, unfetched.value, False
        job = self.jobs[c.job]
        outcome, fraud = await trio.to_thread.run_sync(self._check_blobs, job, c)
        if fraud is not None and self.report_fraud is not None:
            await self.report_fraud(fraud, c.worker, c.job, self._result_ts(c))
        if outcome.reason is None and disputed(job.spec):
            ok, why = await self.steps.judge(c)
            return ok, why, True
        if outcome.reason is None:
            return True, "", True
        return False, outcome.reason.value, True

    def _result_ts(self, c: CheckOutput) -> int:
        from p2pnode.wire.envelope import open_envelope

        raw = self._results.get((c.job, c.lease))
        if raw is None:
            return self.clock.wall_ms()
        return int(open_envelope(raw).body["ts"])

    def _check_blobs(self, job: RequesterJob, c: CheckOutput) -> tuple[Outcome, bytes | None]:
        """VER-2 and the kind's proof (PRF-5), in a worker thread; with a wrong row under
        the worker's commitment, also the fraud proof (FRD) when it fits."""
        spec = job.spec
        data = self.blobs.get(c.output)
        if data is None:
            return Outcome(Reason.NOT_FOUND), None
        inputs = {name: self.blobs.get(cid) for name, cid in spec.inputs}
        from p2pnode.proofs import matmul

        if self._secret is None:
            self._secret = matmul.verifier_secret(self.identity.seed)
        seed = matmul.draw_seed(self._secret, c.job, c.lease, c.output, c.commit)
        outcome = judge_output(spec, inputs, data, c.commit, seed)
        raw = self._results.get((c.job, c.lease))
        if outcome.row is None or raw is None:
            return outcome, None
        from p2pnode.proofs import fraud

        proof = fraud.prove(self.identity, self.net, job.raw, raw, inputs, data, outcome.row,
                            self.clock.wall_ms())
        if proof is None:
            self.fraud_too_large += 1
            event(log, "fraud.too_large", logging.INFO, job=c.job.hex())
        return outcome, proof

