"""The requester and worker shells wired in process over the memory transport.

Each node is built as ``Node._build_market`` builds it (RequesterService, WorkerService and
JobsService on a real NodeStore and BlobStore), with a fake wall clock and a seeded
``random.Random``, and runs under ``trio.testing.MockClock(autojump_threshold=0)``: no
sockets, and every timeout, lease and retry runs in virtual time.

Two fakes keep virtual time honest. Under autojump the clock jumps whenever every task
waits, also while a worker thread or a child process does real work, so a run would race
its own SQLite writes and executions: ``trio.to_thread.run_sync`` runs its function in the
event loop instead, and ``execute`` runs the real executor in process (or never returns,
for the jobs a test holds up).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
from prometheus_client import CollectorRegistry

from p2pnode.blobs.store import BlobStore
from p2pnode.identity import Identity
from p2pnode.jobs import discovery, tensors
from p2pnode.jobs.executors import ExecResult, Limits, get_executor
from p2pnode.jobs.market import LEASE_BUDGET_PERIODS, JobState, LeaseState, RequesterJob
from p2pnode.jobs.matching import Capacity
from p2pnode.jobs.model import Requirements
from p2pnode.jobs.requester import Candidate
from p2pnode.jobs.worker import Worker, WorkState
from p2pnode.services import worker as worker_service
from p2pnode.services.clock import LocalClock
from p2pnode.services.jobs import JobMetrics, JobsService
from p2pnode.services.memory import MemoryNetwork, MemoryTransport
from p2pnode.services.requester import RequesterService, RequesterSettings
from p2pnode.services.worker import WorkerService, WorkerSettings
from p2pnode.store import NodeStore
from p2pnode.wire.reasons import Reason, WireError

NET = "shell"
LEASE_S = 10
WORKER = Capacity(kinds=frozenset({"matmul"}), cores=4, mem=8 << 30, gpus=0, gpu_mem=0)
REQUESTER_ONLY = Capacity(kinds=frozenset(), cores=1, mem=1 << 30, gpus=0, gpu_mem=0)
# A guard against a hanging test, in virtual seconds; not a bound on anything measured.
GUARD_S = 3600
NEVER = 1e9  # a discovery interval: the worker only takes offered jobs


# -- fakes ------------------------------------------------------------------------------------


class FakeWall:
    """A wall clock that follows virtual time and can be stepped."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.start = start
        self.offset = 0.0

    def __call__(self) -> float:
        return self.start + trio.current_time() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += seconds


class FakeExecute:
    """``p2pnode.services.worker.execute`` in process: the real executor, synchronously.
    The first ``squat`` calls never return (a worker that holds a lease and does nothing);
    while ``hold`` is set, executions wait for it."""

    def __init__(self) -> None:
        self.squat = 0
        self.hold: trio.Event | None = None
        self.calls = 0
        self.squatting = 0
        self.stopped = 0

    async def __call__(self, kind: str, inputs: Mapping[str, bytes], params: Mapping[str, Any],
                       limits: Limits, *, device: str = "auto",
                       on_start: Callable[[int], object] | None = None,
                       pool: object = None) -> ExecResult:
        self.calls += 1
        if self.squat > 0:
            self.squat -= 1
            self.squatting += 1
            try:
                await trio.sleep_forever()
            finally:
                self.stopped += 1
        if self.hold is not None:
            await self.hold.wait()
        await trio.lowlevel.checkpoint()
        return get_executor(kind, "cpu").run(inputs, params, limits)


async def _in_loop(fn: Callable[..., Any], *args: Any, **_options: Any) -> Any:
    await trio.lowlevel.checkpoint()
    return fn(*args)


# -- nodes ------------------------------------------------------------------------------------


@dataclass
class ShellNode:
    """One node: identity, storage and endpoint outlive its services (a restart)."""

    world: World
    seed: int
    capacity: Capacity
    home: Path
    identity: Identity = field(init=False)
    store: NodeStore = field(init=False)
    blobs: BlobStore = field(init=False)
    transport: MemoryTransport = field(init=False)
    market: JobsService | None = None
    events: list[tuple[str, str]] = field(default_factory=list)
    rejects: list[Reason] = field(default_factory=list)
    _scope: trio.CancelScope | None = None
    _done: trio.Event | None = None

    def __post_init__(self) -> None:
        self.identity = Identity(bytes([self.seed]) * 32)
        self.home.mkdir(parents=True)
        self.store = NodeStore(self.home / "state.db")
        self.blobs = BlobStore(self.home / "blobs", self.home / "blobs.db",
                               retention_s=self.world.retention_s, clock=self.world.wall)
        self.transport = self.world.net.transport(self.peer_id, self.key,
                                                  on_reject=self.rejects.append)
        self.transport.serve_blobs(self.blobs)

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    @property
    def key(self) -> bytes:
        return self.identity.public_key

    @property
    def requester(self) -> RequesterService:
        assert self.market is not None
        return self.market.requester

    @property
    def worker(self) -> WorkerService:
        assert self.market is not None
        return self.market.worker

    def work_state(self, job_id: bytes) -> WorkState | None:
        w = self.worker.machine.work.get(job_id)
        return None if w is None else w.state

    def _build(self, *, offers: bool, discovery_s: float) -> JobsService:
        """As ``Node._build_market``, over the memory transport."""
        clock = LocalClock(wall=self.world.wall)
        rng = random.Random(self.seed)
        metrics = JobMetrics(CollectorRegistry())

        def count(role: str, ev: str) -> None:
            self.events.append((role, ev))
            metrics.count(role, ev)

        def table() -> list[Candidate]:
            return [Candidate(n.peer_id, n.key, n.capacity) for n in self.world.nodes
                    if n is not self and n.capacity.kinds]

        def capacity_of(peer: str) -> Capacity | None:
            return next((n.capacity for n in self.world.nodes if n.peer_id == peer), None)

        reject = self.rejects.append
        requester = RequesterService(
            identity=self.identity, transport=self.transport, clock=clock, rng=rng,
            store=self.store, blobs=self.blobs,
            settings=RequesterSettings(net=NET, offers=offers, lease_s=LEASE_S,
                                       retention_ms=int(self.world.retention_s * 1000),
                                       max_jobs=self.world.max_jobs),
            table=table, capacity_of=capacity_of, addrs_of=lambda peer: [], count=count,
            on_reject=reject)
        worker = WorkerService(
            identity=self.identity,
            machine=Worker(NET, self.key, self.capacity, 1, wall_time_s=60.0,
                           retention_ms=int(self.world.retention_s * 1000)),
            transport=self.transport, clock=clock, rng=rng, store=self.store,
            blobs=self.blobs,
            settings=WorkerSettings(net=NET, device="cpu", discovery_interval_s=discovery_s),
            count=count, on_reject=reject)
        return JobsService(net=NET, transport=self.transport, requester=requester,
                           worker=worker, metrics=metrics, on_reject=reject,
                           retention_s=self.world.retention_s,
                           housekeeping_s=self.world.retention_s / 10)

    async def start(self, *, offers: bool = True, discovery_s: float = NEVER) -> JobsService:
        market = self._build(offers=offers, discovery_s=discovery_s)
        self.market = market
        self._done = done = trio.Event()

        async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(self.transport.run)
                    await nursery.start(market.run)
                    task_status.started(nursery.cancel_scope)
            finally:
                done.set()

        self._scope = await self.world.nursery.start(run)
        return market

    async def stop(self) -> None:
        """Cancel every service of the node and wait until they are gone."""
        assert self._scope is not None and self._done is not None
        self._scope.cancel()
        await self._done.wait()


@dataclass
class World:
    net: MemoryNetwork
    wall: FakeWall
    execute: FakeExecute
    root: Path
    nursery: trio.Nursery = field(init=False)
    nodes: list[ShellNode] = field(default_factory=list)
    retention_s: float = 86_400.0
    max_jobs: int = 10_000

    def node(self, capacity: Capacity = WORKER) -> ShellNode:
        n = ShellNode(self, len(self.nodes) + 1, capacity, self.root / f"n{len(self.nodes)}")
        self.nodes.append(n)
        return n


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    fake = FakeExecute()
    monkeypatch.setattr(worker_service, "execute", fake)
    monkeypatch.setattr(trio.to_thread, "run_sync", _in_loop)
    w = World(MemoryNetwork(), FakeWall(), fake, tmp_path)
    yield w
    for n in w.nodes:
        n.store.close()
        n.blobs.close()


async def running(world: World, nursery: trio.Nursery, *capacities: Capacity,
                  offers: bool = True, discovery_s: float = NEVER) -> list[ShellNode]:
    world.nursery = nursery
    nodes = [world.node(c) for c in capacities]
    for n in nodes:
        await n.start(offers=offers, discovery_s=discovery_s)
    return nodes


async def wait_until(predicate: Callable[[], bool], guard_s: float = GUARD_S) -> None:
    with trio.fail_after(guard_s):
        while not predicate():
            await trio.sleep(0.05)


def matmul_inputs(n: int, seed: bytes) -> tuple[dict[str, bytes], np.ndarray]:
    a = tensors.random_int8_matrix(n, n, seed + b"a")
    b = tensors.random_int8_matrix(n, n, seed + b"b")
    product = a.astype(np.int64) @ b.astype(np.int64)
    return {"a": tensors.encode_matrix(a), "b": tensors.encode_matrix(b)}, product


async def submit(r: ShellNode, seed: bytes = b"s") -> tuple[RequesterJob, np.ndarray]:
    inputs, product = matmul_inputs(12, seed)
    job = await r.requester.submit("matmul", inputs, {}, Requirements(), lease_s=LEASE_S)
    return job, product


def output_of(r: ShellNode, job: RequesterJob) -> np.ndarray:
    (lease,) = job.accepted_leases()
    assert lease.output is not None
    data = r.blobs.get(lease.output)
    assert data is not None
    return tensors.decode_matrix(data, 1 << 20)


def lease_of(node: ShellNode, job: RequesterJob) -> int:
    return next(le.number for le in job.leases.values() if le.worker == node.key)


# -- tests ------------------------------------------------------------------------------------


async def test_offered_matmul_job_is_leased_executed_verified_and_completed(
        world: World, autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        r, w = await running(world, nursery, REQUESTER_ONLY, WORKER)
        job, product = await submit(r)
        await wait_until(lambda: job.terminal)
        assert job.state is JobState.COMPLETED
        (lease,) = job.leases.values()
        assert lease.state is LeaseState.ACCEPTED and lease.worker == w.key
        assert np.array_equal(output_of(r, job), product)
        events = [h[1] for h in job.history]
        assert events[:3] == ["published", "claimed", "leased"] and events[-1] == "verified"
        await wait_until(lambda: w.work_state(job.id) is WorkState.ACCEPTED)
        # It came by an offer: the worker never looked in the DHT.
        assert world.net.dht.calls.get("find_providers", 0) == 0
        assert ("requester", "completed") in r.events and ("worker", "leased") in w.events
        assert not r.rejects and not w.rejects
        nursery.cancel_scope.cancel()


async def test_without_offers_the_worker_finds_the_job_through_the_dht(
        world: World, autojump_clock: trio.testing.MockClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    offers: list[bytes] = []
    async with trio.open_nursery() as nursery:
        r, w = await running(world, nursery, REQUESTER_ONLY, WORKER, offers=False,
                             discovery_s=1.0)
        on_offer = w.worker.on_offer

        async def recorded(ex: Any, rec: Any) -> None:
            offers.append(rec.raw)
            await on_offer(ex, rec)

        monkeypatch.setattr(w.worker, "on_offer", recorded)
        job, product = await submit(r, b"dht")
        await wait_until(lambda: job.terminal)
        assert job.state is JobState.COMPLETED
        assert np.array_equal(output_of(r, job), product)
        assert lease_of(w, job) == 1 and not offers
        dht = world.net.dht
        assert dht.values[discovery.job_record_key(job.id)] == job.raw  # put
        assert any(r.peer_id in peers for peers in dht.providers.values())  # provide
        assert dht.calls["find_providers"] > 0 and dht.calls["get"] > 0
        await wait_until(lambda: w.work_state(job.id) is WorkState.ACCEPTED)
        nursery.cancel_scope.cancel()


async def test_a_lease_expires_when_its_worker_disappears_and_another_completes_it(
        world: World, autojump_clock: trio.testing.MockClock) -> None:
    world.execute.squat = 1  # the first worker is mid-execution when it is cut off
    async with trio.open_nursery() as nursery:
        r, w1, w2 = await running(world, nursery, REQUESTER_ONLY, WORKER, WORKER)
        job, product = await submit(r, b"gone")
        await wait_until(lambda: world.execute.squatting == 1)
        (first,) = job.leases.values()
        await wait_until(lambda: first.heartbeats > 0)
        gone, other = (w1, w2) if first.worker == w1.key else (w2, w1)
        assert gone.work_state(job.id) is WorkState.RUNNING
        world.net.disconnect(gone.peer_id)
        await wait_until(lambda: job.terminal)
        assert job.state is JobState.COMPLETED
        assert np.array_equal(output_of(r, job), product)
        assert first.state is LeaseState.EXPIRED and first.reason == Reason.LEASE_EXPIRED.value
        assert first.expires < first.budget_end  # no heartbeat came: not its budget's end
        second = job.leases[2]
        assert second.state is LeaseState.ACCEPTED and second.worker == other.key
        assert job.reassigned == 1 and job.rejected == 0
        # The cut-off worker gives up on its own and its execution is stopped.
        await wait_until(lambda: gone.work_state(job.id) is WorkState.LOST)
        await wait_until(lambda: world.execute.stopped == 1)
        await wait_until(lambda: other.work_state(job.id) is WorkState.ACCEPTED)
        nursery.cancel_scope.cancel()


async def test_a_busy_blob_server_is_waited_for_and_never_blamed(
        world: World, autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        r, w = await running(world, nursery, REQUESTER_ONLY, WORKER)
        w.transport.blob_faults.busy = 5
        job, product = await submit(r, b"busy")
        await wait_until(lambda: job.terminal)
        assert job.state is JobState.COMPLETED
        assert np.array_equal(output_of(r, job), product)
        (lease,) = job.leases.values()
        assert lease.state is LeaseState.ACCEPTED and lease.worker == w.key
        assert job.rejected == 0 and job.reassigned == 0
        faults = w.transport.blob_faults
        assert faults.busy_answers == 5 and faults.served == 1
        assert ("requester", "rejected") not in r.events and not r.rejects
        await wait_until(lambda: w.work_state(job.id) is WorkState.ACCEPTED)
        nursery.cancel_scope.cancel()


async def test_a_worker_waits_for_a_busy_requester_blob_server(
        world: World, autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        r, w = await running(world, nursery, REQUESTER_ONLY, WORKER)
        r.transport.blob_faults.busy = 3  # the input fetches
        job, product = await submit(r, b"inputs")
        await wait_until(lambda: job.terminal)
        assert job.state is JobState.COMPLETED
        assert np.array_equal(output_of(r, job), product)
        assert list(job.leases) == [1] and job.reassigned == 0
        assert r.transport.blob_faults.busy_answers == 3
        await wait_until(lambda: w.work_state(job.id) is WorkState.ACCEPTED)
        nursery.cancel_scope.cancel()


async def test_a_requester_restarted_while_verifying_resumes_and_completes(
        world: World, autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        r, w = await running(world, nursery, REQUESTER_ONLY, WORKER)
        faults = w.transport.blob_faults
        faults.stall = True  # the output fetch hangs: the lease stays in verification
        job, product = await submit(r, b"restart")
        await wait_until(lambda: faults.stalled == 1)
        (lease,) = job.leases.values()
        assert lease.state is LeaseState.VERIFYING
        await r.stop()
        ((_, _, row, _),) = r.store.req_jobs()
        assert [le["state"] for le in row["leases"]] == [LeaseState.VERIFYING.value]
        faults.stall = False
        await r.start()
        resumed = r.requester.jobs[job.id]
        assert resumed is not job  # read back from the NodeStore
        await wait_until(lambda: resumed.terminal)
        assert resumed.state is JobState.COMPLETED
        assert list(resumed.leases) == [1] and resumed.leases[1].state is LeaseState.ACCEPTED
        assert np.array_equal(output_of(r, resumed), product)
        assert faults.stalled == 1 and faults.served == 1
        await wait_until(lambda: w.work_state(job.id) is WorkState.ACCEPTED)
        # The worker's result exchange broke with the restart; it sent the result again
        # (SUBMIT_RETRY_MS) and got the recorded verdict, which counts nothing twice.
        work = w.worker.machine.work[job.id]
        assert [h[1] for h in work.history][-2:] == ["submit_failed", "accepted"]
        assert r.events.count(("requester", "completed")) == 1
        # ... before its next heartbeat could find the job finished.
        assert Reason.BAD_STATE not in r.rejects
        nursery.cancel_scope.cancel()


async def test_a_wall_clock_step_mid_lease_expires_nothing(
        world: World, autojump_clock: trio.testing.MockClock) -> None:
    world.execute.hold = hold = trio.Event()
    async with trio.open_nursery() as nursery:
        r, w = await running(world, nursery, REQUESTER_ONLY, WORKER)
        job, product = await submit(r, b"wall")
        await wait_until(lambda: w.work_state(job.id) is WorkState.RUNNING)
        (lease,) = job.leases.values()
        before = lease.heartbeats
        world.wall.jump(3600)
        await trio.sleep(2 * LEASE_S)  # two lease periods pass after the step ...
        assert lease.heartbeats > before  # ... renewed all along, not expired
        assert lease.state is LeaseState.ACTIVE
        hold.set()
        await wait_until(lambda: job.terminal)
        assert job.state is JobState.COMPLETED
        assert np.array_equal(output_of(r, job), product)
        (lease,) = job.leases.values()
        assert lease.state is LeaseState.ACCEPTED and lease.heartbeats > 0
        assert job.reassigned == 0 and "lease_expired" not in [h[1] for h in job.history]
        await wait_until(lambda: w.work_state(job.id) is WorkState.ACCEPTED)
        work = w.worker.machine.work[job.id]
        assert WorkState.LOST.value not in [h[1] for h in work.history]
        nursery.cancel_scope.cancel()


async def test_a_squatting_worker_holds_a_lease_no_longer_than_its_budget(
        world: World, autojump_clock: trio.testing.MockClock) -> None:
    world.execute.squat = 1  # heartbeats, never executes
    async with trio.open_nursery() as nursery:
        r, w1, w2 = await running(world, nursery, REQUESTER_ONLY, WORKER, WORKER)
        start_ms = r.requester.clock.now_ms()
        job, product = await submit(r, b"squat")
        await wait_until(lambda: job.terminal)
        assert job.state is JobState.COMPLETED
        assert np.array_equal(output_of(r, job), product)
        first, second = job.leases[1], job.leases[2]
        squatter = w1 if first.worker == w1.key else w2
        budget_ms = LEASE_BUDGET_PERIODS * LEASE_S * 1000
        # Renewed by its heartbeats up to the budget, and not a moment longer.
        assert first.state is LeaseState.EXPIRED and first.heartbeats > 1
        assert first.budget_end == first.granted + budget_ms
        assert first.expires == first.budget_end
        (reassigned_at,) = [t for t, what, _ in job.history if what == "reassigned"]
        assert first.granted <= reassigned_at <= first.budget_end + 1
        assert reassigned_at - start_ms <= budget_ms + 1000  # on the virtual timeline
        assert second.granted >= reassigned_at and second.worker != squatter.key
        assert second.state is LeaseState.ACCEPTED
        await wait_until(lambda: squatter.work_state(job.id) is WorkState.LOST)
        await wait_until(lambda: world.execute.stopped == 1)
        nursery.cancel_scope.cancel()


async def test_a_short_outage_during_the_output_fetch_does_not_reject_the_worker(
        world: World, autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        r, w = await running(world, nursery, REQUESTER_ONLY, WORKER)
        faults = w.transport.blob_faults
        faults.stall = True
        job, _product = await submit(r, b"blip")
        await wait_until(lambda: faults.stalled == 1)
        faults.stall = False
        world.net.disconnect(w.peer_id)  # resets the fetch in flight
        await trio.sleep(0.5)
        world.net.reconnect(w.peer_id)
        (lease,) = job.leases.values()
        await wait_until(lambda: lease.state is not LeaseState.VERIFYING)
        assert lease.state is LeaseState.ACCEPTED
        nursery.cancel_scope.cancel()


async def test_finished_jobs_their_rows_and_blobs_go_after_the_retention_open_ones_stay(
        world: World, autojump_clock: trio.testing.MockClock) -> None:
    world.retention_s = 100.0
    async with trio.open_nursery() as nursery:
        r, w = await running(world, nursery, REQUESTER_ONLY, WORKER)
        done, _ = await submit(r, b"done")
        await wait_until(lambda: done.terminal)
        inputs, _ = matmul_inputs(12, b"open")
        # no worker has 64 cores: this job stays open throughout
        open_job = await r.requester.submit("matmul", inputs, {}, Requirements(cores=64),
                                            deadline_s=3000)
        output = done.accepted_leases()[0].output
        assert output is not None and r.blobs.has(output) and w.blobs.has(output)
        await trio.sleep(world.retention_s * 1.5)
        assert set(r.requester.jobs) == {open_job.id} and w.worker.machine.work == {}
        assert [row[0] for row in r.store.req_jobs()] == [open_job.id]
        assert w.store.work_jobs() == []
        assert not r.blobs.has(output) and not w.blobs.has(output)
        assert all(r.blobs.has(c) for _, c in open_job.spec.inputs)  # pinned: still open
        assert w.blobs.count() == 0
        assert r.market is not None
        assert r.market.metrics.pruned.labels(table="req_jobs")._value.get() == 1
        assert r.market.metrics.rows.labels(table="req_jobs")._value.get() == 1
        # a restart resumes the open job
        await r.stop()
        await r.start()
        assert set(r.requester.jobs) == {open_job.id}
        assert not r.requester.jobs[open_job.id].terminal
        nursery.cancel_scope.cancel()


async def test_a_submission_at_the_cap_of_open_jobs_is_refused_and_counted(
        world: World, autojump_clock: trio.testing.MockClock) -> None:
    world.max_jobs = 2
    async with trio.open_nursery() as nursery:
        (r,) = await running(world, nursery, REQUESTER_ONLY)  # nobody runs them: all open
        for seed in (b"1", b"2"):
            await submit(r, seed)
        with pytest.raises(WireError) as e:
            await submit(r, b"3")
        assert e.value.reason is Reason.LIMIT_EXCEEDED
        assert len(r.requester.jobs) == 2 and len(r.store.req_jobs()) == 2
        assert r.requester.machine.refused == 1
        await trio.sleep(2)  # the gauges' next round
        assert r.market is not None
        assert r.market.metrics.refused.labels(role="requester")._value.get() == 1
        assert r.market is not None and r.market.usage()["requester_jobs"] == {
            "held": 2, "cap": 2}
        nursery.cancel_scope.cancel()


async def test_an_idle_worker_backs_off_its_lookups_and_still_finds_a_late_job(
        world: World, autojump_clock: trio.testing.MockClock) -> None:
    """DHT-10: rounds that find nothing double the wait up to DISCOVERY_BACKOFF intervals."""
    async with trio.open_nursery() as nursery:
        r, w = await running(world, nursery, REQUESTER_ONLY, WORKER, offers=False,
                             discovery_s=1.0)
        dht = world.net.dht
        keys_per_round = 2 * len(w.worker.machine.capacity.kinds) * len(
            w.worker.machine.capacity.resource_classes)
        await trio.sleep(300)
        rounds = dht.calls.get("find_providers", 0) // keys_per_round
        # at 1 s a round, 300 rounds; with the backoff, about 300 / (6 x 1 s), jitter aside
        assert 300 / (discovery.DISCOVERY_BACKOFF * 1.2) - 3 <= rounds <= 300 / (
            discovery.DISCOVERY_BACKOFF * 0.8) + 4
        # a job appears: found within one backed-off wait, then the rounds speed up again
        job, _ = await submit(r, b"late")
        with trio.fail_after(discovery.DISCOVERY_BACKOFF * 1.2 + 5):
            await wait_until(lambda: job.terminal)
        assert job.state is JobState.COMPLETED
        nursery.cancel_scope.cancel()
