"""The worker machine driven by event scripts (spec 04 §5.2), no sockets."""

from __future__ import annotations

import pytest

from p2pnode.identity import Identity
from p2pnode.jobs.market import LEASE_BUDGET_PERIODS
from p2pnode.jobs.matching import Capacity
from p2pnode.jobs.messages import JobLease
from p2pnode.jobs.model import JobSpec, Requirements, SignedJob
from p2pnode.jobs.worker import (
    TRANSITIONS,
    Execute,
    FetchInputs,
    SendHeartbeat,
    SendResult,
    Stop,
    Work,
    Worker,
    WorkState,
)
from p2pnode.wire.reasons import Reason

T0 = 1_700_000_000_000
REQ = Identity.generate()
ME = Identity.generate()
CAP = Capacity(kinds=frozenset({"matmul"}), cores=4, mem=8 << 30, gpus=0, gpu_mem=0,
               prices={"matmul": 40})
OUT = b"\x12\x20" + b"\xaa" * 32


def job(**kw: object) -> SignedJob:
    base: dict[str, object] = dict(
        net="t", kind="matmul", inputs=(), params=(), req=Requirements(), max_price=100,
        created=T0, deadline=T0 + 600_000, lease_s=9, redundancy=1, nonce=b"\x00" * 16)
    base.update(kw)
    return SignedJob.open(JobSpec(**base).seal(REQ))  # type: ignore[arg-type]


def lease_of(sj: SignedJob, number: int = 1, expires: int = T0 + 9_000) -> JobLease:
    return JobLease(net="t", job=sj.id, worker=ME.public_key, lease=number, expires=expires,
                    price=40)


def leased(w: Worker, sj: SignedJob, now: int = T0) -> list[object]:
    price, why = w.take(sj, now, sj.spec.deadline)
    assert why is None and price == 40
    return list(w.on_claim_answer(sj.id, lease_of(sj), T0 + 9_000, now))


@pytest.mark.parametrize(("kw", "reason"), [
    ({}, None),
    ({"kind": "wasm"}, Reason.REQUIREMENTS_UNMET),
    ({"req": Requirements(cores=8)}, Reason.REQUIREMENTS_UNMET),
    ({"req": Requirements(mem=16 << 30)}, Reason.REQUIREMENTS_UNMET),
    ({"req": Requirements(gpu=True)}, Reason.REQUIREMENTS_UNMET),
    ({"max_price": 39}, Reason.BAD_FIELD),
    ({"net": "other"}, Reason.WRONG_NETWORK),
])
def test_consider_follows_wrk1(kw: dict[str, object], reason: Reason | None) -> None:
    w = Worker("t", ME.public_key, CAP, 2)
    sj = job(**kw)
    assert w.consider(sj, T0, sj.spec.deadline) is reason


def test_slots_are_reserved_with_the_claim_and_freed_at_the_end() -> None:
    w = Worker("t", ME.public_key, CAP, 1)
    a, b = job(), job(nonce=b"\x01" * 16)
    effects = leased(w, a)
    assert isinstance(effects[-1], FetchInputs) and w.free == 0
    assert w.take(b, T0, b.spec.deadline) == (None, Reason.BUSY)
    assert isinstance(w.on_inputs(a.id, True, "", T0 + 1)[-1], Execute)
    done = w.on_executed(a.id, OUT, 10, {}, "", T0 + 2)
    assert isinstance(done[-1], SendResult) and w.work[a.id].state is WorkState.SUBMITTING
    end = w.on_result_answer(a.id, True, None, T0 + 3)
    assert any(isinstance(e, Stop) for e in end) and w.free == 1
    assert w.work[a.id].state is WorkState.ACCEPTED


def test_a_lease_not_for_us_frees_the_slot() -> None:
    w = Worker("t", ME.public_key, CAP, 1)
    sj = job()
    w.take(sj, T0, sj.spec.deadline)
    assert w.lease_problem(sj, ME.public_key, lease_of(sj)) is Reason.SIGNER_MISMATCH
    other = JobLease(net="t", job=sj.id, worker=REQ.public_key, lease=1, expires=T0, price=1)
    assert w.lease_problem(sj, REQ.public_key, other) is Reason.BAD_FIELD
    assert w.on_claim_answer(sj.id, None, 0, T0) == [] and w.free == 1


def test_execution_is_bounded_by_the_lease_budget() -> None:
    w = Worker("t", ME.public_key, CAP, 1, wall_time_s=10_000)
    sj = job()
    leased(w, sj)
    ex = w.on_inputs(sj.id, True, "", T0 + 1_000)[-1]
    assert isinstance(ex, Execute)
    assert ex.wall_time_s == (LEASE_BUDGET_PERIODS * 9_000 - 1_000) / 1000


def test_heartbeats_fall_due_and_a_refusal_stops_the_work() -> None:
    w = Worker("t", ME.public_key, CAP, 1)
    sj = job()
    leased(w, sj)
    due = w.next_deadline()
    assert due == T0 + 3_000  # lease_s / 3
    assert w.on_timer(due - 1) == []
    assert w.on_timer(due) == [SendHeartbeat(sj.id, 1, 0)]
    out = w.on_heartbeat_answer(sj.id, None, True, due + 5)
    assert any(isinstance(e, Stop) for e in out) and w.work[sj.id].state is WorkState.LOST


def test_restart_resumes_from_the_fetch_within_the_budget() -> None:
    w = Worker("t", ME.public_key, CAP, 1)
    sj = job()
    leased(w, sj)
    held = w.work[sj.id]
    fresh = Worker("t", ME.public_key, CAP, 1)
    back = Work(job=sj, state=WorkState.RUNNING, lease=1, price=40, expires=held.expires,
                budget_end=held.budget_end)
    out = fresh.resume(back, T0 + 20_000)
    assert isinstance(out[-1], FetchInputs) and back.state is WorkState.FETCHING
    assert fresh.next_deadline() == T0 + 20_000  # heartbeat at once
    late = Worker("t", ME.public_key, CAP, 1)
    gone = Work(job=sj, state=WorkState.RUNNING, lease=1, budget_end=held.budget_end)
    late.resume(gone, held.budget_end)
    assert gone.state is WorkState.LOST and late.free == 1


def test_every_transition_is_reachable_only_from_its_table_entry() -> None:
    states = {s for s, _ in TRANSITIONS}
    assert WorkState.ACCEPTED not in states and WorkState.CLAIMING in states
    with pytest.raises(AssertionError):
        w = Worker("t", ME.public_key, CAP, 1)
        sj = job()
        leased(w, sj)
        w._step(w.work[sj.id], next(e for (s, e) in TRANSITIONS if s is WorkState.SUBMITTING
                                    and e.value == "accepted"), T0)
