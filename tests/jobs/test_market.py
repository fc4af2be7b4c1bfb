"""The requester and worker machines, driven by events with no sockets (spec 04 §4)."""

from __future__ import annotations

import pytest

from p2pnode.jobs.market import (
    MAX_REJECTED_RESULTS,
    TRANSITIONS,
    Await,
    Decided,
    Grant,
    JobState,
    LeaseState,
    Refuse,
    RequesterJob,
    Verify,
)
from p2pnode.jobs.model import JobSpec, Requirements
from p2pnode.wire.reasons import Reason

T0 = 1_700_000_000_000
W1, W2, W3 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
OUT = b"\x12\x20" + b"\xaa" * 32
OUT2 = b"\x12\x20" + b"\xbb" * 32


def spec(**kw: object) -> JobSpec:
    base = dict(net="t", kind="matmul", inputs=(), params=(), req=Requirements(),
                max_price=100, created=T0, deadline=T0 + 60_000, lease_s=10, redundancy=1,
                nonce=b"\x00" * 16)
    base.update(kw)
    return JobSpec(**base)  # type: ignore[arg-type]


visited: set[tuple[JobState, object]] = set()


def new_job(**kw: object) -> RequesterJob:
    job = RequesterJob.new(b"\x12\x20" + b"\x01" * 32, spec(**kw), b"raw", T0)
    original = job._step

    def recording(ev, now, detail=""):  # type: ignore[no-untyped-def]
        visited.add((job.state, ev))
        original(ev, now, detail)

    job._step = recording  # type: ignore[method-assign]
    return job


def grant(d: object) -> int:
    assert isinstance(d, Grant), d
    return d.lease.number


def test_claim_heartbeat_result_verified() -> None:
    job = new_job()
    n = grant(job.on_claim(W1, 50, T0 + 1))
    assert job.state is JobState.LEASED
    assert job.leases[n].expires == T0 + 1 + 10_000
    d = job.on_heartbeat(W1, n, 500, T0 + 5000)
    assert isinstance(d, Grant) and d.lease.expires == T0 + 5000 + 10_000
    assert job.state is JobState.RUNNING
    v = job.on_result(W1, n, OUT, T0 + 6000)
    assert isinstance(v, Verify) and job.state is JobState.RESULT
    lease = job.on_verified(n, True, "", T0 + 6100)
    assert lease.state is LeaseState.ACCEPTED
    assert job.state is JobState.COMPLETED and job.completed_at == T0 + 6100
    assert [h[1] for h in job.history] == ["published", "claimed", "leased", "running",
                                           "result", "verified"]
    # a repeated result gets the recorded verdict; anything else is refused
    assert isinstance(job.on_result(W1, n, OUT, T0 + 7000), Decided)
    r = job.on_claim(W2, 50, T0 + 7000)
    assert isinstance(r, Refuse) and r.reason is Reason.BAD_STATE


def test_duplicate_claim_is_idempotent_and_second_worker_waits() -> None:
    job = new_job()
    a = job.on_claim(W1, 50, T0)
    b = job.on_claim(W1, 50, T0 + 10)
    assert isinstance(a, Grant) and isinstance(b, Grant) and a.lease is b.lease
    assert len(job.leases) == 1
    r = job.on_claim(W2, 50, T0 + 20)
    assert isinstance(r, Refuse) and r.reason is Reason.BUSY


@pytest.mark.parametrize(("price", "now", "reason"), [
    (101, T0, Reason.BAD_FIELD),
    (50, T0 + 60_000, Reason.DEADLINE_PASSED),
])
def test_claim_refusals(price: int, now: int, reason: Reason) -> None:
    r = new_job().on_claim(W1, price, now)
    assert isinstance(r, Refuse) and r.reason is reason


def test_non_leaseholder_and_forged_lease_numbers_are_refused() -> None:
    job = new_job()
    n = grant(job.on_claim(W1, 50, T0))
    for d in (job.on_heartbeat(W2, n, 0, T0 + 1), job.on_result(W2, n, OUT, T0 + 1),
              job.on_result(W1, n + 7, OUT, T0 + 1)):
        assert isinstance(d, Refuse) and d.reason is Reason.NOT_LEASEHOLDER
    assert job.state is JobState.LEASED


def test_lease_expiry_reassigns_and_excludes_the_old_worker() -> None:
    job = new_job()
    n = grant(job.on_claim(W1, 50, T0))
    grant(job.on_heartbeat(W1, n, 0, T0 + 2000))
    assert job.on_tick(T0 + 12_000) == []  # renewed until T0 + 12000
    assert job.on_tick(T0 + 12_001) == ["reassigned"]
    assert job.state is JobState.PUBLISHED and job.reassigned == 1
    late = job.on_result(W1, n, OUT, T0 + 12_500)
    assert isinstance(late, Refuse) and late.reason is Reason.LEASE_EXPIRED
    hb = job.on_heartbeat(W1, n, 0, T0 + 12_500)
    assert isinstance(hb, Refuse) and hb.reason is Reason.LEASE_EXPIRED
    again = job.on_claim(W1, 50, T0 + 13_000)
    assert isinstance(again, Refuse) and again.reason is Reason.BAD_STATE
    m = grant(job.on_claim(W2, 50, T0 + 13_000))
    assert m != n and job.excluded_workers() == {W1}
    assert isinstance(job.on_result(W2, m, OUT, T0 + 14_000), Verify)
    job.on_verified(m, True, "", T0 + 14_100)
    assert job.state is JobState.COMPLETED
    assert "reassigned" in [h[1] for h in job.history]


def test_unheartbeated_lease_expires_too() -> None:
    job = new_job()
    grant(job.on_claim(W1, 50, T0))
    assert job.on_tick(T0 + 10_001) == ["reassigned"]
    assert job.state is JobState.PUBLISHED


def test_result_after_deadline_is_refused_and_job_fails() -> None:
    job = new_job(deadline=T0 + 20_000, lease_s=30)
    n = grant(job.on_claim(W1, 50, T0))
    assert job.leases[n].expires == T0 + 20_000  # a lease never outlives the job
    r = job.on_result(W1, n, OUT, T0 + 20_001)
    assert isinstance(r, Refuse) and r.reason is Reason.DEADLINE_PASSED
    assert job.on_tick(T0 + 20_001) == ["expired"]
    assert job.state is JobState.FAILED
    assert job.on_tick(T0 + 30_000) == []


def test_workers_agreeing_on_a_failing_output_give_up() -> None:
    job = new_job()
    workers = [bytes([i]) * 32 for i in range(1, MAX_REJECTED_RESULTS + 1)]
    for i, w in enumerate(workers):
        n = grant(job.on_claim(w, 50, T0 + i))
        assert isinstance(job.on_result(w, n, OUT, T0 + i), Verify)
        assert isinstance(job.on_result(w, n, OUT, T0 + i), Await)  # the same, resent
        busy = job.on_result(w, n, OUT2, T0 + i)
        assert isinstance(busy, Refuse) and busy.reason is Reason.BUSY
        job.on_verified(n, False, "bad_field", T0 + i)
        if i < len(workers) - 1:
            assert job.state is JobState.PUBLISHED
    assert job.state is JobState.FAILED
    assert job.rejected == MAX_REJECTED_RESULTS


def test_redundancy_needs_every_result() -> None:
    job = new_job(redundancy=2)
    a = grant(job.on_claim(W1, 50, T0))
    b = grant(job.on_claim(W2, 50, T0))
    r = job.on_claim(W3, 50, T0)
    assert isinstance(r, Refuse) and r.reason is Reason.BUSY
    grant(job.on_heartbeat(W1, a, 10, T0 + 1))
    assert isinstance(job.on_result(W1, a, OUT, T0 + 2), Verify)
    grant(job.on_heartbeat(W2, b, 10, T0 + 3))  # the other lease keeps running
    assert job.state is JobState.RESULT
    job.on_verified(a, True, "", T0 + 4)
    assert job.state is JobState.RUNNING  # one of two
    assert isinstance(job.on_result(W2, b, OUT2, T0 + 5), Verify)
    job.on_verified(b, True, "", T0 + 6)
    assert job.state is JobState.COMPLETED


def test_redundant_leases_in_every_combination() -> None:
    # second claim while the first lease is leased / running / verifying
    for advance in range(3):
        job = new_job(redundancy=2)
        a = grant(job.on_claim(W1, 50, T0))
        if advance >= 1:
            grant(job.on_heartbeat(W1, a, 0, T0 + 1))
        if advance >= 2:
            assert isinstance(job.on_result(W1, a, OUT, T0 + 2), Verify)
        b = grant(job.on_claim(W2, 50, T0 + 3))
        grant(job.on_heartbeat(W2, b, 0, T0 + 4))
        if advance == 2:
            assert isinstance(job.on_result(W2, b, OUT2, T0 + 5), Verify)
            job.on_verified(b, False, "x", T0 + 6)  # one rejected, the other still verifying
            assert job.state is JobState.RESULT
    # a lease expires while another is being verified
    job = new_job(redundancy=2)
    a = grant(job.on_claim(W1, 50, T0))
    grant(job.on_claim(W2, 50, T0))
    assert isinstance(job.on_result(W1, a, OUT, T0 + 1), Verify)
    assert job.on_tick(T0 + 10_001) == ["reassigned"]
    assert job.state is JobState.RESULT
    # the deadline strikes in each state
    for prep in range(4):
        job = new_job(redundancy=1, lease_s=120)
        if prep >= 1:
            a = grant(job.on_claim(W1, 50, T0))
        if prep >= 2:
            grant(job.on_heartbeat(W1, a, 0, T0 + 59_000))
        if prep >= 3:
            assert isinstance(job.on_result(W1, a, OUT, T0 + 59_500), Verify)
        assert job.on_tick(T0 + 60_000) == ["expired"]
        assert job.state is JobState.FAILED


def test_every_transition_was_exercised() -> None:
    # The scenarios above, run again here so this test stands alone, walk the whole table.
    visited.clear()
    test_claim_heartbeat_result_verified()
    test_lease_expiry_reassigns_and_excludes_the_old_worker()
    test_unheartbeated_lease_expires_too()
    test_result_after_deadline_is_refused_and_job_fails()
    test_workers_agreeing_on_a_failing_output_give_up()
    test_redundancy_needs_every_result()
    test_redundant_leases_in_every_combination()
    missing = set(TRANSITIONS) - visited
    assert not missing, f"transitions never taken: {sorted(missing)}"


def test_persistence_round_trip() -> None:
    job = new_job(redundancy=2)
    a = grant(job.on_claim(W1, 50, T0))
    grant(job.on_heartbeat(W1, a, 300, T0 + 1))
    assert isinstance(job.on_result(W1, a, OUT, T0 + 2), Verify)
    back = RequesterJob.from_row(job.id, job.spec, job.raw, job.to_row())
    assert back.state is job.state and back.history == job.history
    assert back.leases == job.leases
    back.on_verified(a, True, "", T0 + 3)
    assert back.leases[a].state is LeaseState.ACCEPTED
