"""The worker's shell: carries out the effects of ``p2pnode.jobs.worker.Worker``.

It answers offers, finds jobs through the DHT (DHT-10, WRK-5), fetches inputs, runs
executions that really stop when cancelled, sends heartbeats and results, and persists the
work it holds (WRK-9). One timer, armed from the machine's ``next_deadline``.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from p2pnode.blobs.store import BlobStore, StoreFull
from p2pnode.identity import Identity, peer_id_str
from p2pnode.jobs import discovery
from p2pnode.jobs.executors.base import ExecError, Limits
from p2pnode.jobs.messages import (
    JobClaim,
    JobHeartbeat,
    JobLease,
    JobOffer,
    JobRefuse,
    JobResult,
    JobVerdict,
    Received,
    decode,
)
from p2pnode.jobs.model import (
    T_LEASE,
    T_REFUSE,
    T_VERDICT,
    SignedJob,
    created_in_future,
)
from p2pnode.jobs.worker import (
    OPEN,
    VERDICT_WAIT_MS,
    Effect,
    Execute,
    FetchInputs,
    Persist,
    SendHeartbeat,
    SendResult,
    Stop,
    Work,
    Worker,
    WorkState,
)
from p2pnode.ports import Exchange, Transport, TransportError
from p2pnode.services.cheating import Cheater
from p2pnode.services.clock import LocalClock
from p2pnode.services.disputes import ChainAnswers
from p2pnode.services.execution import ChildPool, ExecutionSlots, execute
from p2pnode.services.pull import EXCHANGE_TIMEOUT_S, PullPath
from p2pnode.store import NodeStore
from p2pnode.wire.cid import cid_of
from p2pnode.wire.envelope import SignatureCache
from p2pnode.wire.reasons import Reason, WireError

log = logging.getLogger("p2pnode.worker")

BLOB_TIMEOUT_S = 60.0
# As VER-1 on the requester's side: a requester whose blob server is busy serving others is
# asked again after this; the lease (heartbeats go on while fetching) bounds the waiting.
BUSY_RETRY_S = 1.0
Count = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    net: str
    device: str = "auto"
    discovery_interval_s: float = 5.0
    limits: Limits = dataclasses.field(default_factory=Limits)
    cheat: tuple[str, ...] = ()  # testnets only (p2pnode.proofs.cheat)


def chain_proof(meta: dict[str, int | str]) -> dict[str, Any]:
    """A step job's chain commitment (spec 06 WSM-5), taken out of the executor's meta into
    the result's proof."""
    root, count = meta.pop("chain_root", None), meta.pop("checkpoints", None)
    if not isinstance(root, str) or not isinstance(count, int):
        return {}
    return {"chain": bytes.fromhex(root), "checkpoints": count}


class WorkerService(PullPath):
    def __init__(self, *, identity: Identity, machine: Worker, transport: Transport,
                 clock: LocalClock, rng: random.Random, store: NodeStore, blobs: BlobStore,
                 settings: WorkerSettings, count: Count,
                 on_reject: Callable[[Reason], None],
                 verified: SignatureCache | None = None) -> None:
        self.identity = identity
        self.verified = verified if verified is not None else SignatureCache()  # ENV-12
        self.machine = machine
        self.transport = transport
        self.clock = clock
        self.rng = rng
        self.store = store
        self.blobs = blobs
        self.s = settings
        self.net = settings.net
        self.count = count
        self.on_reject = on_reject
        self._nursery: trio.Nursery | None = None
        self._scopes: dict[bytes, trio.CancelScope] = {}
        self._wake = trio.Event()
        self._persist_lock = trio.Lock()
        # The bound on executions that are really running: a slot frees only once its
        # child process is gone (EXE-9).
        self._slots = ExecutionSlots(max(1, machine.concurrency))
        self._children = ChildPool(keep=max(1, machine.concurrency))
        self.cheater = Cheater(settings.cheat, settings.limits)  # testnets only
        self.answers = ChainAnswers(identity=identity, net=self.net, blobs=blobs,
                                    limits=settings.limits, wall_ms=clock.wall_ms,
                                    tamper=self.cheater.tamper_for)

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._resume()
                nursery.start_soon(self._timer_loop)
                nursery.start_soon(self._discovery_loop)
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                await self._children.aclose()

    async def _resume(self) -> None:
        shift = self.clock.now_ms() - self.clock.wall_ms()
        rows = await trio.to_thread.run_sync(
            self.store.work_jobs, tuple(s.value for s in OPEN if s is not WorkState.CLAIMING))
        effects: list[Effect] = []
        for _job_id, raw, state, row in rows:
            w = Work(job=SignedJob.open(raw), state=WorkState(state), lease=row["lease"],
                     price=row["price"], expires=row["expires"] + shift,
                     budget_end=row["budget_end"] + shift,
                     history=[(int(a) + shift, str(b), str(c)) for a, b, c in row["history"]])
            effects += self.machine.resume(w, self.clock.now_ms())
            if w.state in OPEN:
                self._pin(w.job)
        await self._apply(effects)

    async def _timer_loop(self) -> None:
        while True:
            await self._apply(self.machine.on_timer(self.clock.now_ms()))
            due = self.machine.next_deadline()
            with trio.move_on_at(self.clock.trio_deadline(due) if due is not None
                                 else trio.current_time() + 3600):
                await self._wake.wait()
            self._wake = trio.Event()

    # -- blobs open work needs (spec 05 §4.4) -------------------------------------------

    def _pin(self, sj: SignedJob, *more: bytes) -> None:
        """The inputs (before they are fetched) and the output of open work stay in the
        store; the work's end (``Stop``, or a claim that got no lease) lets them go."""
        self.blobs.pin(("work", sj.id), [*(c for _, c in sj.spec.inputs), *more])

    # -- effects ------------------------------------------------------------------------

    async def _apply(self, effects: Sequence[Effect]) -> None:
        assert self._nursery is not None
        for e in effects:
            if isinstance(e, Persist):
                await self._persist(e.job)
            elif isinstance(e, FetchInputs):
                self._run_for(e.job, self._fetch_inputs, e.job)
            elif isinstance(e, Execute):
                self._run_for(e.job, self._execute, e)
            elif isinstance(e, Stop):
                self.blobs.unpin(("work", e.job))
                scope = self._scopes.pop(e.job, None)
                if scope is not None:
                    scope.cancel()
                w = self.machine.work.get(e.job)
                if w is not None:
                    self.count("worker", w.state.value)
            elif isinstance(e, SendHeartbeat):
                self._nursery.start_soon(self._heartbeat, e)
            elif isinstance(e, SendResult):
                self._nursery.start_soon(self._submit, e)
        if effects:
            self._wake.set()

    def _run_for(self, job_id: bytes, fn: Callable[..., Any], arg: Any) -> None:
        """Run ``fn(arg)`` in a scope that ``Stop`` cancels."""
        assert self._nursery is not None
        scope = trio.CancelScope()
        self._scopes[job_id] = scope

        async def task() -> None:
            with scope:
                await fn(arg)

        self._nursery.start_soon(task)

    async def _persist(self, job_id: bytes) -> None:
        async with self._persist_lock:
            w = self.machine.work.get(job_id)
            if w is None:  # forgotten meanwhile: it was finished and its row is written
                return
            shift = self.clock.wall_ms() - self.clock.now_ms()
            row = {"lease": w.lease, "price": w.price, "expires": w.expires + shift,
                   "budget_end": w.budget_end + shift,
                   "output": w.output.hex() if w.output else None,
                   "requester": peer_id_str(w.job.requester),
                   "history": [(t + shift, a, b) for t, a, b in w.history]}
            await trio.to_thread.run_sync(self.store.save_work_job, w.id, w.job.raw,
                                          w.state.value, row, self.clock.wall_ms())

    # -- claiming (WRK-1 .. WRK-5) --------------------------------------------------------

    def _deadline(self, sj: SignedJob) -> int:
        return self.clock.from_wall(sj.spec.deadline)

    def _take(self, sj: SignedJob) -> tuple[int | None, Reason | None]:
        wall = self.clock.wall_ms()
        price, why = self.machine.take(sj, self.clock.now_ms(), self._deadline(sj),
                                       created_in_future(sj.spec, wall))
        if price is not None:
            self._pin(sj)
        return price, why

    def _claim(self, sj: SignedJob, price: int) -> bytes:
        return JobClaim(net=self.net, job=sj.id, price=price,
                        ts=self.clock.wall_ms()).seal(self.identity)

    async def _claim_answered(self, sj: SignedJob, data: bytes | None) -> bool:
        """WRK-4: a lease signed by the requester for this job and worker, or nothing."""
        lease: JobLease | None = None
        if data is not None:
            try:
                reply = decode(data, net=self.net, expected={T_LEASE, T_REFUSE})
                if isinstance(reply.msg, JobLease):
                    why = self.machine.lease_problem(sj, reply.signer, reply.msg)
                    if why is not None:
                        raise WireError(why, "lease not for us")
                    lease = reply.msg
            except WireError as e:
                self.on_reject(e.reason)
        expires = self.clock.from_wall(lease.expires) if lease else 0
        await self._apply(self.machine.on_claim_answer(sj.id, lease, expires,
                                                       self.clock.now_ms()))
        if sj.id not in self.machine.work:  # no lease: nothing of it is kept
            self.blobs.unpin(("work", sj.id))
        if lease is not None:
            self.count("worker", "leased")
        return lease is not None

    async def on_offer(self, ex: Exchange, rec: Received) -> None:
        """WRK-3: open the offered spec, check its signer, consider, claim."""
        assert isinstance(rec.msg, JobOffer)
        refuse = JobRefuse.make
        try:
            sj = SignedJob.open(rec.msg.spec)
        except WireError as e:
            self.on_reject(e.reason)
            await ex.send(refuse(self.net, b"", e.reason, e.detail,
                                 self.clock.wall_ms()).seal(self.identity))
            return
        if sj.requester != rec.signer:
            self.on_reject(Reason.SIGNER_MISMATCH)
            await ex.send(refuse(self.net, sj.id, Reason.SIGNER_MISMATCH,
                                 "offer not from the job's requester",
                                 self.clock.wall_ms()).seal(self.identity))
            return
        price, why = self._take(sj)
        if price is None:
            assert why is not None
            if why is Reason.CLOCK_SKEW or why is Reason.WRONG_NETWORK:
                self.on_reject(why)
            await ex.send(refuse(self.net, sj.id, why, "", self.clock.wall_ms())
                          .seal(self.identity))
            return
        data: bytes | None = None
        try:
            await ex.send(self._claim(sj, price))
            data = await ex.receive(EXCHANGE_TIMEOUT_S)
        except (WireError, trio.TooSlowError):
            data = None
        finally:
            with trio.CancelScope(shield=True):
                await self._claim_answered(sj, data)

    async def on_probe(self, ex: Exchange, rec: Received) -> None:
        """DSP-4: a referee's question about the chain of a step result of ours."""
        from p2pnode.jobs.messages import JobProbe
        from p2pnode.proofs.bisect import committed_chain

        assert isinstance(rec.msg, JobProbe)
        w = self.machine.work.get(rec.msg.job)
        claim = committed_chain(w.proof) if w is not None else None
        reply = await self.answers.answer(rec.msg, rec.signer, w.job if w else None,
                                          w.lease if w else 0, claim)
        self.count("worker", "probe_answered")
        await ex.send(reply)

    async def _request(self, peer: str, payload: bytes, timeout: float) -> bytes | None:
        try:
            ex = await self.transport.open_job(peer)
            try:
                await ex.send(payload)
                return await ex.receive(timeout)
            finally:
                await ex.close()
        except (WireError, trio.TooSlowError, TransportError):
            return None

    # -- the work -------------------------------------------------------------------------

    async def _fetch_inputs(self, job_id: bytes) -> None:
        w = self.machine.work[job_id]
        requester = peer_id_str(w.job.requester)
        ok, detail = True, ""
        try:
            for _name, c in w.job.spec.inputs:
                while True:
                    try:
                        await self.transport.fetch_blob(
                            requester, c, self.blobs, max_size=self.s.limits.max_input_bytes,
                            timeout=BLOB_TIMEOUT_S)
                        break
                    except WireError as e:
                        # "busy" is a server's normal answer under load, not a failed
                        # fetch: giving up on it lost the lease and excluded this worker.
                        if e.reason is not Reason.BUSY:
                            raise
                        await trio.sleep(BUSY_RETRY_S)
        except (WireError, trio.TooSlowError, TransportError, StoreFull) as e:
            ok, detail = False, getattr(e, "reason", Reason.TRUNCATED).value
        self._scopes.pop(job_id, None)
        await self._apply(self.machine.on_inputs(job_id, ok, detail, self.clock.now_ms()))

    def _load_inputs(self, sj: SignedJob) -> dict[str, bytes]:
        out = {}
        for name, c in sj.spec.inputs:
            data = self.blobs.get(c)
            if data is None:
                raise ExecError(Reason.NOT_FOUND, f"input {name} vanished from the store")
            out[name] = data
        return out

    def _put_output(self, sj: SignedJob, data: bytes) -> tuple[bytes, bytes, dict[str, Any]]:
        """Commit to the output (PRF-1) and store it; returns (data, cid, proof)."""
        proof: dict[str, Any] = {}
        chain = self.cheater.steps(sj, self._load_inputs(sj)) \
            if sj.spec.kind == "wasm" and self.cheater.segment else None
        if chain is not None:  # a step job's chain otherwise comes with the executor's meta
            data, proof = chain.output, {"chain": chain.root(),
                                         "checkpoints": len(chain.entries)}
            w = self.machine.work.get(sj.id)
            if w is not None:
                self.answers.remember(sj.id, w.lease, chain.raw)
        if sj.spec.kind == "matmul":
            cheated = self.cheater.matmul(sj, data)
            if cheated is not None:
                data, proof = cheated
            else:
                from p2pnode.jobs.tensors import decode_matrix
                from p2pnode.proofs.matmul import commitment

                proof = commitment(decode_matrix(data, 1 << 26))
        self._pin(sj, cid_of(data))  # pinned before the put: the requester fetches it here
        return data, self.blobs.put(data), proof

    async def _execute(self, e: Execute) -> None:
        w = self.machine.work[e.job]
        sj = w.job
        limits = dataclasses.replace(self.s.limits, wall_time_s=e.wall_time_s)
        output: bytes | None = None
        size, meta, reason = 0, {}, ""
        proof: dict[str, Any] = {}
        async with self._slots.run(e.job):
            try:
                inputs = await trio.to_thread.run_sync(self._load_inputs, sj)
                res = await execute(sj.spec.kind, inputs, dict(sj.spec.params), limits,
                                    device=self.s.device, pool=self._children)
                data, output, proof = await trio.to_thread.run_sync(self._put_output, sj,
                                                                    res.output)
                size = len(data)
                meta = {k: v for k, v in res.meta.items()
                        if isinstance(v, int) or (isinstance(v, str) and len(v) <= 64)}
                chained = chain_proof(meta)  # out of meta in any case
                proof = proof or chained
            except ExecError as err:
                reason = f"{err.reason.value}: {err.detail}"
            except ValueError as err:  # this node cannot run it (no GPU any more, say)
                reason = f"{Reason.LIMIT_EXCEEDED.value}: {err}"
            except StoreFull as err:  # no room for the output: this node's own limit
                output, reason = None, f"{err.reason.value}: {err.strerror}"
            finally:
                # A Stop while the output was being put (the thread runs on) must not
                # leave it pinned: the work is over.
                held = self.machine.work.get(e.job)
                if held is None or held.state not in OPEN:
                    self.blobs.unpin(("work", e.job))
        self._scopes.pop(e.job, None)
        await self._apply(self.machine.on_executed(e.job, output, size, meta, reason,
                                                   self.clock.now_ms(), proof))

    async def _heartbeat(self, e: SendHeartbeat) -> None:
        w = self.machine.work.get(e.job)
        if w is None:
            return
        hb = JobHeartbeat(net=self.net, job=e.job, lease=e.lease, progress=e.progress,
                          ts=self.clock.wall_ms()).seal(self.identity)
        data = await self._request(peer_id_str(w.job.requester), hb, EXCHANGE_TIMEOUT_S)
        renewed, refused = None, False
        if data is not None:
            try:
                reply = decode(data, net=self.net, expected={T_LEASE, T_REFUSE})
                if isinstance(reply.msg, JobRefuse):
                    refused = reply.signer == w.job.requester
                else:
                    assert isinstance(reply.msg, JobLease)
                    why = self.machine.lease_problem(w.job, reply.signer, reply.msg, e.lease)
                    if why is not None:  # WRK-6: counts as no answer
                        raise WireError(why, "renewal not for this lease")
                    renewed = self.clock.from_wall(reply.msg.expires)
            except WireError as err:
                self.on_reject(err.reason)
        await self._apply(self.machine.on_heartbeat_answer(e.job, renewed, refused,
                                                           self.clock.now_ms()))
        # The answer may move a timer without an effect (a refusal while submitting sets
        # retry_at): re-arm the timer from next_deadline.
        self._wake.set()

    async def _submit(self, e: SendResult) -> None:
        w = self.machine.work.get(e.job)
        if w is None:
            return
        msg = JobResult(net=self.net, job=e.job, lease=e.lease, output=e.output, size=e.size,
                        ts=self.clock.wall_ms(), meta=e.meta,
                        proof=dict(e.proof)).seal(self.identity)
        wait_s = max(1.0, (w.verdict_by - self.clock.now_ms()) / 1000)
        data = await self._request(peer_id_str(w.job.requester), msg,
                                   min(wait_s, VERDICT_WAIT_MS / 1000))
        accepted: bool | None = None
        refused: str | None = None
        if data is not None:
            try:
                reply = decode(data, net=self.net, expected={T_VERDICT, T_REFUSE})
                if reply.signer != w.job.requester:  # WRK-7
                    raise WireError(Reason.SIGNER_MISMATCH, "verdict not from the requester")
                if isinstance(reply.msg, JobVerdict):
                    accepted = reply.msg.accepted
                else:
                    assert isinstance(reply.msg, JobRefuse)
                    refused = reply.msg.reason
            except WireError as err:
                self.on_reject(err.reason)
        await self._apply(self.machine.on_result_answer(e.job, accepted, refused,
                                                        self.clock.now_ms()))
        # A failed exchange sets retry_at and returns no effect: re-arm the timer, or the
        # result would wait for the next heartbeat instead of SUBMIT_RETRY_MS (WRK-7).
        self._wake.set()

    # -- the pull path (DHT-10, WRK-5) -----------------------------------------------------

    async def _discovery_loop(self) -> None:
        interval = self.s.discovery_interval_s
        await trio.sleep(self.rng.uniform(0, interval))
        empty = 0  # rounds in a row that found no provider (DHT-10 backoff)
        while True:
            if self.machine.free > 0:
                empty = 0 if await self.discover_once() else empty + 1
            wait = discovery.discovery_wait_s(interval, empty)
            await trio.sleep(wait * self.rng.uniform(0.8, 1.2))

    # -- views ----------------------------------------------------------------------------

    def summary(self) -> list[dict[str, Any]]:
        return [{"id": jid.hex(), "state": w.state.value, "kind": w.job.spec.kind,
                 "requester": peer_id_str(w.job.requester)}
                for jid, w in self.machine.work.items()]

