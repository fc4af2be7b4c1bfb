"""Attacks on the job market's lease rules, over real nodes on loopback (spec 04 §4, §6).

Each attack is refused with its reason code and counted in the victim's
``p2pnode_messages_rejected_total{topic="job",reason}`` where the rule refuses a message;
and each time the job still completes through an honest worker.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from libp2p.peer.id import ID

from p2pnode.blobs.store import BlobStore
from p2pnode.identity import Identity
from p2pnode.jobs import market
from p2pnode.jobs.executors import compile_wat
from p2pnode.jobs.market import LEASE_BUDGET_PERIODS, JobState, LeaseState, RequesterJob
from p2pnode.jobs.messages import (
    JobClaim,
    JobHeartbeat,
    JobLease,
    JobRefuse,
    JobResult,
    JobVerdict,
    Received,
    decode,
)
from p2pnode.jobs.model import Requirements
from p2pnode.net import peering
from p2pnode.net.blob_protocol import BlobHandler, blob_protocol_id
from p2pnode.net.job_protocol import request
from p2pnode.node import Node
from p2pnode.wire.reasons import Reason
from tests.adversarial.attacker import Attacker, attacker_against, node_addr
from tests.adversarial.test_job_attacks import NET, OUT, matmul_inputs, rejected
from tests.caps.ads import make_ad
from tests.integration.helpers import HW, LOOP_WAT, node_config, run_in_own_scope, wait_for

TEST_TIMEOUT_S = 60


# -- helpers ----------------------------------------------------------------------------------


async def start(nursery: trio.Nursery, home: Path, *, identity: Identity | None = None,
                boot: Node | None = None, clock: Callable[[], float] = time.time,
                **cfg: Any) -> tuple[Node, trio.CancelScope]:
    """A node under its own cancel scope (cancelling it is a crash: its state stays)."""
    home.mkdir(parents=True, exist_ok=True)
    config = node_config(bootstrap=(node_addr(boot),) if boot else (), **cfg)
    node = Node(home, config, identity or Identity.generate(), clock=clock, hardware=HW)
    scope = await nursery.start(run_in_own_scope, node)
    return node, scope


async def requester_node(nursery: trio.Nursery, home: Path,
                         **cfg: Any) -> tuple[Node, trio.CancelScope]:
    # A requester that runs no jobs itself: every lease goes to the peers under test.
    return await start(nursery, home, caps_kinds=(), **cfg)


async def ask(atk: Attacker, victim: Node, payload: Any) -> Received:
    """One exchange from the attacker's host: the victim's decoded reply."""
    reply = await request(atk.host, victim.peer_id, NET, payload.seal(atk.identity))
    return decode(reply, net=NET)


def claim(victim: Node, job: RequesterJob) -> JobClaim:
    return JobClaim(net=NET, job=job.id, price=0, ts=victim.now_ms())


def result(victim: Node, job: RequesterJob, lease: int, size: int = 10) -> JobResult:
    return JobResult(net=NET, job=job.id, lease=lease, output=OUT, size=size,
                     ts=victim.now_ms())


def refused(rec: Received) -> str:
    assert isinstance(rec.msg, JobRefuse), rec.msg
    return rec.msg.reason


async def advertise(atk: Attacker, victim: Node) -> None:
    """Publish a valid capability ad (8 cores, 64 GiB, a GPU, matmul and wasm) from the
    attacker's host and wait until the victim holds it: a key with an ad costs nothing."""
    await atk.publish(make_ad(seq=1, ts=victim.now_ms()).encode(atk.identity))
    await wait_for(lambda: atk.peer_id in victim.table)


@asynccontextmanager
async def attackers(victim: Node, n: int) -> AsyncIterator[list[Attacker]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(attacker_against(victim)) for _ in range(n)]


def events(job: RequesterJob) -> list[str]:
    return [what for _t, what, _d in job.history]


class ServeAfter(BlobHandler):
    """A worker's blob server that answers the first ``busy`` requests with ``busy``, resets
    the streams of the next ``resets`` requests, and holds every request until ``gate`` is
    set; then it serves as usual."""

    def __init__(self, store: BlobStore, *, busy: int = 0, resets: int = 0,
                 gate: trio.Event | None = None) -> None:
        super().__init__(store)
        self.busy_left = busy
        self.resets_left = resets
        self.gate = gate
        self.held = 0  # requests that reached the gate
        self.answered_busy = 0
        self.reset_streams = 0

    async def _serve(self, stream: Any, request: Any) -> None:
        if self.gate is not None:
            self.held += 1
            await self.gate.wait()
        if self.resets_left and not self.busy_left:
            self.resets_left -= 1
            self.reset_streams += 1
            await stream.reset()
            return
        await super()._serve(stream, request)

    @asynccontextmanager
    async def _slot(self, peer: str) -> AsyncIterator[bool]:
        if self.busy_left:
            self.busy_left -= 1
            self.answered_busy += 1
            yield False  # as when every slot is taken by other peers' fetches
            return
        async with super()._slot(peer) as got:
            yield got


def serve_outputs_with(worker: Node, handler: BlobHandler) -> None:
    worker.stack.host.set_stream_handler(blob_protocol_id(NET), handler)


# -- 1. free keys -----------------------------------------------------------------------------


async def test_free_keys_cannot_lease_and_oversized_results_do_not_fail_the_job(
        tmp_path: Path) -> None:
    """LEASE-3: a fresh key with no capability ad gets no lease (``requirements_unmet``)
    and cannot post results for leases it does not hold (``not_leaseholder``). Keys WITH a
    valid ad get leases, but a result whose size claim exceeds the requester's blob limit
    is rejected ``too_large`` without a fetch, excludes that worker, and — a transfer
    failure — never counts toward failing the job (LEASE-8): an honest worker completes it."""
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as outer:
            req, _ = await requester_node(outer, tmp_path / "r")
            job = await req.market.requester.submit("matmul", matmul_inputs(), {},
                                                    Requirements(), lease_s=10)
            async with attackers(req, 3) as atks:
                # (a) no ad: no lease, and no result for someone else's lease number
                for i, atk in enumerate(atks, start=1):
                    assert refused(await ask(atk, req, claim(req, job))) == "requirements_unmet"
                    assert rejected(req, Reason.REQUIREMENTS_UNMET) == i
                    for number in (1, 7):
                        rec = await ask(atk, req, result(req, job, number))
                        assert refused(rec) == "not_leaseholder"
                assert rejected(req, Reason.NOT_LEASEHOLDER) == 2 * len(atks)
                assert job.leases == {} and job.state is JobState.PUBLISHED
                # (b) with an ad: a lease each, one after the other, and an oversized result
                too_big = req.config.jobs_max_blob_bytes + 1
                for atk in atks:
                    await advertise(atk, req)
                for atk in atks:
                    rec = await ask(atk, req, claim(req, job))
                    assert isinstance(rec.msg, JobLease), rec.msg
                    number = rec.msg.lease
                    if number > 1:  # a result for another attacker's lease
                        assert refused(await ask(atk, req, result(req, job, 1))) == \
                            "not_leaseholder"
                    rec = await ask(atk, req, result(req, job, number, size=too_big))
                    assert isinstance(rec.msg, JobVerdict), rec.msg
                    assert not rec.msg.accepted and rec.msg.reason == "too_large"
                    lease = job.leases[number]
                    assert lease.state is LeaseState.REJECTED and not lease.checked
                    # LEASE-10: that worker holds its rejected lease for good
                    assert refused(await ask(atk, req, claim(req, job))) == "bad_state"
                assert rejected(req, Reason.NOT_LEASEHOLDER) == 2 * len(atks) + 2
                assert rejected(req, Reason.BAD_STATE) == len(atks)
                # Three oversized results with one output from three workers: the job
                # lives on, and none of them is offered it again.
                assert job.state is JobState.PUBLISHED and job.rejected == 3
                assert job.excluded_workers() == {a.identity.public_key for a in atks}
                # An honest worker joins and completes it.
                worker, _ = await start(outer, tmp_path / "w", boot=req)
                await wait_for(lambda: job.terminal, timeout=30)
            assert job.state is JobState.COMPLETED
            [accepted] = job.accepted_leases()
            assert accepted.worker == worker.identity.public_key and accepted.number == 4
            outer.cancel_scope.cancel()


# -- 2. lease squatting -----------------------------------------------------------------------


async def test_a_lease_squatter_loses_its_lease_at_the_renewal_budget(tmp_path: Path) -> None:
    """LEASE-11: a worker that heartbeats forever and never returns a result keeps its lease
    only until ``LEASE_BUDGET_PERIODS * lease_s`` after it was granted; then its heartbeats
    are refused ``lease_expired`` and the job goes to an honest worker."""
    lease_s = 2
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as outer:
            req, _ = await requester_node(outer, tmp_path / "r")
            job = await req.market.requester.submit("matmul", matmul_inputs(), {},
                                                    Requirements(), lease_s=lease_s)
            async with attacker_against(req) as atk:
                await advertise(atk, req)
                rec = await ask(atk, req, claim(req, job))
                assert isinstance(rec.msg, JobLease), rec.msg
                number = rec.msg.lease
                lease = job.leases[number]
                budget_ms = LEASE_BUDGET_PERIODS * lease_s * 1000
                assert lease.budget_end == lease.granted + budget_ms
                replies: list[Any] = []
                give_up = trio.current_time() + 10 * budget_ms / 1000
                while True:  # heartbeat at three times the rate WRK-6 asks for
                    hb = JobHeartbeat(net=NET, job=job.id, lease=number, progress=1,
                                      ts=req.now_ms())
                    replies.append((await ask(atk, req, hb)).msg)
                    if isinstance(replies[-1], JobRefuse):
                        break
                    assert trio.current_time() < give_up, "the squatter was never refused"
                    await trio.sleep(lease_s / 6)
                assert replies[-1].reason == "lease_expired"
                assert rejected(req, Reason.LEASE_EXPIRED) == 1
                renewals = [r for r in replies if isinstance(r, JobLease)]
                assert len(renewals) == lease.heartbeats >= 2
                # Renewed past its first period, never past its budget.
                assert lease.granted + lease_s * 1000 < lease.expires <= lease.budget_end
                await wait_for(lambda: lease.state is LeaseState.EXPIRED)
                assert lease.reason == "lease_expired" and job.reassigned == 1
                assert refused(await ask(atk, req, claim(req, job))) == "bad_state"
                worker, _ = await start(outer, tmp_path / "w", boot=req)
                await wait_for(lambda: job.terminal, timeout=30)
            assert job.state is JobState.COMPLETED
            [accepted] = job.accepted_leases()
            assert accepted.worker == worker.identity.public_key
            outer.cancel_scope.cancel()


# -- 3. verification wedge --------------------------------------------------------------------


async def _stop_while_verifying(outer: trio.Nursery, tmp: Path, gate: trio.Event
                                ) -> tuple[Node, Node, ServeAfter, bytes]:
    """A requester and a worker whose blob server holds every request at ``gate``; the
    requester is stopped (as by kill -9) while it verifies the worker's result."""
    req, req_scope = await requester_node(outer, tmp / "r")
    worker, _ = await start(outer, tmp / "w", boot=req)
    held = ServeAfter(worker.blobs, gate=gate)
    serve_outputs_with(worker, held)
    await wait_for(lambda: req.caps_known() == 1)
    job = await req.market.requester.submit("matmul", matmul_inputs(), {}, Requirements(),
                                            lease_s=10)
    await wait_for(lambda: held.held >= 1
                   and any(le.state is LeaseState.VERIFYING for le in job.leases.values()),
                   timeout=30)
    req_scope.cancel()
    await wait_for(lambda: req.stack is None)
    return req, worker, held, job.id


async def test_a_restarted_requester_resumes_a_verification(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """XCH-10: a requester stopped while a lease is ``verifying`` resumes the verification
    when it comes back from the same home: the lease is verified and the job completes,
    with no reassignment. Its dials take a while, as over a real network: the resumed
    fetch starts before the restarted node is connected to the worker again, and (VER-1)
    reaches it at the address it last saw for it, not only through an ad it has yet to
    receive again."""
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as outer:
            gate = trio.Event()
            req, worker, _, job_id = await _stop_while_verifying(outer, tmp_path, gate)
            gate.set()  # the output can be had now
            dial = peering.dial

            async def slow_dial(*args: Any, **kw: Any) -> tuple[bool, str]:
                await trio.sleep(0.3)
                return await dial(*args, **kw)

            monkeypatch.setattr(peering, "dial", slow_dial)
            again, _ = await requester_node(outer, req.home, identity=req.identity)
            job = again.market.jobs[job_id]
            first = job.leases[1]
            await wait_for(lambda: first.state is not LeaseState.VERIFYING, timeout=20)
            assert first.state is LeaseState.ACCEPTED, (first.state, first.reason)
            await wait_for(lambda: job.terminal)
            assert job.state is JobState.COMPLETED
            assert job.reassigned == 0 and job.rejected == 0
            [accepted] = job.accepted_leases()
            assert accepted.number == 1 and accepted.worker == worker.identity.public_key
            # The worker hears the verdict too (it sends its result again, LEASE-7).
            work = worker.market.worker.machine.work[job_id]
            await wait_for(lambda: work.state.value == "accepted")
            outer.cancel_scope.cancel()


async def test_an_unobtainable_output_is_judged_at_its_verify_deadline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LEASE-12: after the restart the output still cannot be had (the worker's server
    holds every request): the lease is judged ``truncated`` at its verify deadline, not
    left ``verifying``, and the job goes to another worker."""
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as outer:
            gate = trio.Event()  # never set
            req, worker, held, job_id = await _stop_while_verifying(outer, tmp_path, gate)
            monkeypatch.setattr(market, "VERIFY_TIMEOUT_MS", 3_000)
            before = held.held
            again, _ = await requester_node(outer, req.home, identity=req.identity)
            job = again.market.jobs[job_id]
            first = job.leases[1]
            assert first.state is LeaseState.VERIFYING
            await wait_for(lambda: first.state is not LeaseState.VERIFYING, timeout=15)
            assert first.state is LeaseState.REJECTED and first.reason == "truncated"
            assert not first.checked and job.state is JobState.PUBLISHED
            assert job.excluded_workers() == {worker.identity.public_key}
            assert held.held > before  # the resumed verification did ask the worker
            other, _ = await start(outer, tmp_path / "w2", boot=again)
            await wait_for(lambda: job.terminal, timeout=30)
            assert job.state is JobState.COMPLETED
            [accepted] = job.accepted_leases()
            assert accepted.worker == other.identity.public_key
            outer.cancel_scope.cancel()


# -- 4. third-party load ----------------------------------------------------------------------


async def test_a_busy_blob_server_is_waited_for_not_blamed(tmp_path: Path) -> None:
    """VER-1: a worker whose blob server is busy serving others (it answers ``busy``) is
    fetched from again later, more often than ``FETCH_ATTEMPTS``, and its result is
    accepted once the server frees up; the worker gets its verdict on the stream of its
    one and only ``job.result``."""
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as outer:
            req, _ = await requester_node(outer, tmp_path / "r")
            worker, _ = await start(outer, tmp_path / "w", boot=req)
            server = ServeAfter(worker.blobs, busy=4)
            serve_outputs_with(worker, server)
            results = count_results(req)
            await wait_for(lambda: req.caps_known() == 1)
            job = await req.market.requester.submit("matmul", matmul_inputs(), {},
                                                    Requirements(), lease_s=10)
            await wait_for(lambda: job.terminal, timeout=30)
            assert job.state is JobState.COMPLETED and job.reassigned == 0
            assert server.answered_busy == 4 and server.served == 1
            await assert_verdict_on_first_stream(worker, job, results)
            outer.cancel_scope.cancel()


async def test_refetching_an_output_keeps_the_connection_with_the_verdict(
        tmp_path: Path) -> None:
    """VER-1: fetches that fail for no fault of the worker (its blob streams reset) are
    retried without dropping the connection to it, which carries the stream the verdict
    goes back on: the worker hears its verdict on its first ``job.result`` exchange."""
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as outer:
            req, _ = await requester_node(outer, tmp_path / "r")
            worker, _ = await start(outer, tmp_path / "w", boot=req)
            server = ServeAfter(worker.blobs, resets=2)
            serve_outputs_with(worker, server)
            results = count_results(req)
            await wait_for(lambda: req.caps_known() == 1)
            network = req.stack.host.get_network()
            wid = ID.from_base58(worker.peer_id)
            conns = network.get_connections(wid)
            assert conns
            job = await req.market.requester.submit("matmul", matmul_inputs(), {},
                                                    Requirements(), lease_s=10)
            await wait_for(lambda: job.terminal, timeout=30)
            assert job.state is JobState.COMPLETED and job.reassigned == 0
            assert server.reset_streams == 2 and server.served == 1
            assert set(map(id, conns)) <= set(map(id, network.get_connections(wid)))
            await assert_verdict_on_first_stream(worker, job, results)
            outer.cancel_scope.cancel()


def count_results(req: Node) -> list[int]:
    """Count the ``job.result`` exchanges the requester answers."""
    service = req.market.requester
    answer = service.answer_result
    seen: list[int] = []

    async def counted(*args: Any) -> bytes:
        seen.append(args[2])
        return await answer(*args)

    service.answer_result = counted  # type: ignore[method-assign]
    return seen


async def assert_verdict_on_first_stream(worker: Node, job: RequesterJob,
                                         results: list[int]) -> None:
    # The requester's job completes a moment before its verdict reaches the worker.
    work = worker.market.worker.machine.work[job.id]
    await wait_for(lambda: work.state.value != "submitting")
    assert work.state.value == "accepted"
    assert "submit_failed" not in [what for _t, what, _d in work.history]
    assert results == [1]


# -- 7. clock steps ---------------------------------------------------------------------------


async def test_a_wall_clock_step_expires_no_lease(tmp_path: Path) -> None:
    """LEASE-13: the requester's wall clock jumps one hour forward while a lease is active:
    no lease expires because of it, the leaseholder's heartbeats keep renewing it, and the
    job completes with that same lease."""
    step = [0.0]

    def wall() -> float:
        return time.time() + step[0]

    lease_s = 10  # heartbeats every 3.3 s; the job runs two to three of those here
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as outer:
            req, _ = await requester_node(outer, tmp_path / "r", clock=wall)
            worker, _ = await start(outer, tmp_path / "w", boot=req, jobs_wasm_fuel=10**12)
            await wait_for(lambda: req.caps_known() == 1)
            job = await req.market.requester.submit(
                "wasm", {"module": compile_wat(LOOP_WAT),
                         "input": (6_000_000).to_bytes(4, "little")},
                {}, Requirements(), lease_s=lease_s)
            await wait_for(lambda: job.state is JobState.RUNNING, timeout=30)
            lease = job.leases[1]
            beats = lease.heartbeats
            step[0] = 3600.0
            # The lease lives on through heartbeats answered after the step ...
            await wait_for(lambda: lease.heartbeats > beats, timeout=30)
            assert lease.state is LeaseState.ACTIVE
            # ... and the job completes with it.
            await wait_for(lambda: job.terminal, timeout=30)
            assert job.state is JobState.COMPLETED
            assert job.reassigned == 0 and "lease_expired" not in events(job)
            assert lease.state is LeaseState.ACCEPTED
            assert lease.worker == worker.identity.public_key
            assert rejected(req, Reason.LEASE_EXPIRED) == 0
            outer.cancel_scope.cancel()
