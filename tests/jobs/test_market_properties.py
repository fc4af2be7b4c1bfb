"""Properties of the market machines over generated event sequences (spec 04 §4, §5.2).

Hypothesis draws timed events — claims by a handful of workers (qualified or not, at
prices within ``max_price`` or above it), heartbeats, results with one of a few outputs,
verdicts (ok or not, checked or not), ticks after random gaps, restarts through
``to_row``/``from_row`` — and every invariant is checked after every step. The events are
the ones a shell can really deliver: a verdict only for a lease that went to verification,
an answer only to a message the machine asked to send, and so on. Behaviour only: no test
here measures time.

For one job (``RequesterJob``), numbered as in the comments below:

1. at most ``redundancy`` leases are live, and live + accepted never exceed it;
2. no lease goes to an excluded worker (an earlier lease of it expired or was rejected) or
   to an unqualified claimant;
3. no expiry is past the deadline or the lease's budget end, nor renewed beyond
   ``granted + LEASE_BUDGET_PERIODS * lease_s``, and no signed expiry is taken back;
4. after a tick no ``verifying`` lease is VERIFY_TIMEOUT_MS old (from its result, or from
   the restart that checks it again);
5. every job ends at its deadline; ``next_deadline()`` is None exactly when the job is
   terminal, is later than a tick just made, and is the first time a tick changes anything;
6. a job that is not terminal shows LEASE-2's settled state, and a terminal one holds no
   live lease;
7. the job gives up before its deadline exactly when MAX_REJECTED_RESULTS distinct workers
   had checked rejections of one output;
8. the stored row loads into the same job, and that job decides the next event the same.

For the requester over its jobs: offers only to qualified workers that hold no live lease
of the job and are not excluded from it, one in flight per job and per worker; a change is
persisted before it is revealed; a check only for a verifying lease; ``Finished`` once per
job. For the worker: at most ``concurrency`` open works and ``free`` what is left; states
move only along TRANSITIONS (the machine's own asserts never fire); a work that reaches a
final state gets a ``Stop`` as its last effect and no effect after it.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import event, example, given
from hypothesis import strategies as st

from p2pnode.jobs.market import (
    LEASE_BUDGET_PERIODS,
    MAX_REJECTED_RESULTS,
    UNCONFIRMED_FORGIVEN,
    VERIFY_TIMEOUT_MS,
    Await,
    Decided,
    Grant,
    JobState,
    Lease,
    LeaseState,
    Refuse,
    RequesterJob,
    Verify,
)
from p2pnode.jobs.matching import Capacity, unmet
from p2pnode.jobs.messages import JobLease
from p2pnode.jobs.model import JobSpec, Requirements, SignedJob
from p2pnode.jobs.requester import (
    Candidate,
    CheckOutput,
    Effect,
    Finished,
    Offer,
    Persist,
    Requester,
)
from p2pnode.jobs.worker import (
    OPEN,
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
NET = "t"
MAX_PRICE = 100
KEYS = tuple(bytes([i]) * 32 for i in range(1, 6))
OUTS = tuple(b"\x12\x20" + bytes([0xA0 + i]) * 32 for i in range(3))
LIVE = (LeaseState.ACTIVE, LeaseState.VERIFYING)
DEAD = (LeaseState.EXPIRED, LeaseState.REJECTED)


def make_spec(*, redundancy: int = 1, lease_s: int = 10, life_ms: int = 600_000,
              nonce: int = 0) -> JobSpec:
    return JobSpec(net=NET, kind="matmul", inputs=(), params=(), req=Requirements(cores=2),
                   max_price=MAX_PRICE, created=T0, deadline=T0 + life_ms, lease_s=lease_s,
                   redundancy=redundancy, nonce=bytes([nonce]) * 16)


def weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each drawn ``weight`` times as often (shrinks to the first)."""
    return st.sampled_from([s for w, s in options for _ in range(w)]).flatmap(lambda s: s)


# Gaps between events: none, a heartbeat's, a lease's, or past a verification deadline.
gaps = weighted((4, st.integers(0, 20)), (4, st.integers(0, 4_000)),
                (2, st.integers(0, 40_000)),
                (2, st.integers(VERIFY_TIMEOUT_MS - 50_000, VERIFY_TIMEOUT_MS + 50_000)))
workers = st.integers(0, len(KEYS) - 1)
# 0: a leaseholder names its own lease; n: the drawn worker names lease n (maybe not its own);
# -1: the holder of the newest lease
picks = weighted((4, st.just(0)), (1, st.integers(1, 4)))
outputs = st.sampled_from((0, 0, 1, 2))  # honest workers mostly agree (EXE-7)
firsts = st.sampled_from((True, False))  # shrinks to True
oks = st.sampled_from((False, False, True))  # verdicts: rejections matter more


# == one job at its requester (RequesterJob, spec 04 §4) ====================================

job_events = weighted(
    (3, st.tuples(st.just("claim"), workers, st.just(50), st.just(True))),
    (2, st.tuples(st.just("claim"), workers, st.sampled_from((50, MAX_PRICE, MAX_PRICE + 1)),
                  firsts)),
    (2, st.tuples(st.just("heartbeat"), workers, picks, st.integers(0, 1_500))),
    (2, st.tuples(st.just("result"), workers, picks, outputs)),
    (2, st.tuples(st.just("checked"), st.integers(0, 6), oks, firsts)),
    (3, st.tuples(st.just("tick"))),
    (1, st.tuples(st.just("restart"))),
)
job_params = st.fixed_dictionaries({
    "redundancy": st.integers(1, 3),
    "lease_s": st.sampled_from((10, 30, 2, 1)),
    "life_ms": weighted((3, st.integers(2 * VERIFY_TIMEOUT_MS, 8 * VERIFY_TIMEOUT_MS)),
                        (1, st.integers(1_000, 2 * VERIFY_TIMEOUT_MS))),
    # the local timeline's offset from the wall clock (LEASE-13): rows hold wall-clock times
    "off": st.sampled_from((0, 123_456, -T0 + 1)),
    "broken": st.booleans(),
})
# A worker's whole attempt in a row: it claims, returns a result and is judged. Three of
# them that agree on a failing output make the job give up (LEASE-8). Their verdict
# (``None``) is the true one: OUTS[0] is the honest output, and in a broken job (say a
# wasm program whose output has the wrong shape) every output fails.
attempts = st.tuples(workers, outputs, st.sampled_from((True, True, False))).map(lambda a: [
    (0, ("claim", a[0], 50, True)), (1, ("result", 0, -1, a[1])),
    (1, ("checked", 0, None, a[2]))])
job_steps = weighted((5, st.tuples(gaps, job_events).map(lambda s: [s])),
                     (2, attempts))
job_runs = st.tuples(job_params, st.lists(job_steps, min_size=8, max_size=40).map(
    lambda parts: [s for part in parts for s in part]))


def reload(job: RequesterJob, off: int) -> RequesterJob:
    """The job as stored (wall clock) and loaded again onto the same timeline."""
    return RequesterJob.from_row(job.id, job.spec, job.raw, job.to_row(-off), off)


def snapshot(job: RequesterJob) -> tuple[Any, ...]:
    return job.state, job.deadline, job.to_row()


def lease_states(job: RequesterJob) -> tuple[Any, ...]:
    return job.state, tuple((n, le.state) for n, le in sorted(job.leases.items()))


def norm(d: Any) -> Any:
    """A decision as a value, to compare two machines' answers."""
    if isinstance(d, Refuse):
        return ("refuse", d.reason)
    if isinstance(d, Lease):
        return ("lease", d.to_row())
    if isinstance(d, list):
        return [norm(x) for x in d]
    if isinstance(d, Grant | Verify | Await | Decided):
        return (type(d).__name__, d.lease.to_row())
    return d


def sender(job: RequesterJob, who: int, pick: int) -> tuple[bytes, int]:
    """The worker and lease number of a heartbeat or result (see ``picks``)."""
    if pick > 0 or not job.leases:
        return KEYS[who], max(pick, 1)
    numbers = sorted(job.leases)
    lease = job.leases[numbers[-1] if pick < 0 else numbers[who % len(numbers)]]
    return lease.worker, lease.number


def resolve(job: RequesterJob, ev: tuple[Any, ...],
            broken: bool = False) -> tuple[Any, ...] | None:
    """A drawn event as the shell would deliver it, or None if it cannot happen now."""
    op = ev[0]
    if op in ("heartbeat", "result"):
        return (op, *sender(job, ev[1], ev[2]), ev[3])
    if op == "checked":
        # A verdict comes for a lease that went to verification: pending ones first, then
        # late ones for a lease judged or expired meanwhile (changes nothing, LEASE-8).
        pool = sorted(job.leases, key=lambda n: (job.leases[n].state is not
                                                 LeaseState.VERIFYING, n))
        pool = [n for n in pool if job.leases[n].output is not None]
        if not pool:
            return None
        number = pool[ev[1]] if ev[1] < len(pool) else pool[0]
        ok = ev[2]
        if ok is None:
            ok = not broken and job.leases[number].output == OUTS[0]
        return ("checked", number, ok, ev[3])
    if op == "claim":
        return ("claim", KEYS[ev[1]], ev[2], ev[3])
    return ev


def apply(job: RequesterJob, ev: tuple[Any, ...], now: int,
          off: int) -> tuple[RequesterJob, Any]:
    op = ev[0]
    if op == "claim":
        return job, job.on_claim(ev[1], ev[2], now, qualified=ev[3])
    if op == "heartbeat":
        return job, job.on_heartbeat(ev[1], ev[2], ev[3], now)
    if op == "result":
        return job, job.on_result(ev[1], ev[2], OUTS[ev[3]], now)
    if op == "checked":
        _, number, ok, checked = ev
        return job, job.on_verified(number, ok, "" if ok else Reason.BAD_FIELD.value, now,
                                    checked)
    if op == "tick":
        return job, job.on_tick(now)
    assert op == "restart"  # stored, loaded into a fresh process, resumed (XCH-10)
    back = reload(job, off)
    return back, back.resume(now)


def agreeing_rejections(job: RequesterJob) -> int:
    """The most distinct workers whose checked rejections share one output (LEASE-8)."""
    agree: dict[bytes, set[bytes]] = {}
    for le in job.leases.values():
        if le.state is LeaseState.REJECTED and le.checked and le.output is not None:
            agree.setdefault(le.output, set()).add(le.worker)
    return max((len(w) for w in agree.values()), default=0)


def settled(job: RequesterJob) -> JobState:
    """LEASE-2's rule: the job shows its most advanced live lease."""
    live = job.live_leases()
    if any(le.state is LeaseState.VERIFYING for le in live):
        return JobState.RESULT
    if any(le.heartbeats for le in live):
        return JobState.RUNNING
    return JobState.LEASED if live else JobState.PUBLISHED


@dataclass
class Seen:
    """What the test remembers of earlier steps."""

    excluded: set[bytes] = field(default_factory=set)
    times: dict[int, tuple[bytes, int, int]] = field(default_factory=dict)  # worker, granted,
    expires: dict[int, int] = field(default_factory=dict)                  # budget end
    verify_from: dict[int, int] = field(default_factory=dict)  # when its verification began
    outcome: dict[int, tuple[LeaseState, str, bool]] = field(default_factory=dict)


def check_leases(job: RequesterJob, seen: Seen) -> None:
    """Invariants 1 and 3, and what a lease may never forget."""
    r, lease_ms = job.spec.redundancy, job.spec.lease_s * 1000
    live, accepted = job.live_leases(), job.accepted_leases()
    # 1. at most `redundancy` leases live, and live + accepted never more (LEASE-1, -8)
    assert len(live) <= r
    assert len(live) + len(accepted) <= r
    assert job.needs_workers() == (0 if job.terminal else r - len(live) - len(accepted))
    # per worker and job: at most one live lease (a second claim is idempotent, LEASE-3),
    # and an earlier lease only if each of them expired unheard and was forgiven (LEASE-10)
    by_worker: dict[bytes, list[Lease]] = {}
    for le in sorted(job.leases.values(), key=lambda x: x.number):
        by_worker.setdefault(le.worker, []).append(le)
    for held in by_worker.values():
        assert sum(le in live for le in held) <= 1
        earlier = held[:-1]
        assert len(earlier) <= UNCONFIRMED_FORGIVEN
        assert all(le.state is LeaseState.EXPIRED and not le.heartbeats for le in earlier)
    assert sorted(job.leases) == list(range(1, len(job.leases) + 1))  # LEASE-1
    for n, le in job.leases.items():
        # 3. a lease's times: fixed at the grant, and no expiry past the budget end, which
        # is at most the deadline and LEASE_BUDGET_PERIODS periods after the grant
        if n in seen.times:
            assert seen.times[n] == (le.worker, le.granted, le.budget_end)
        assert le.budget_end == min(le.granted + LEASE_BUDGET_PERIODS * lease_ms,
                                    job.deadline)
        assert le.granted < le.expires <= le.budget_end <= job.deadline
        assert le.expires <= le.granted + LEASE_BUDGET_PERIODS * lease_ms
        # a signed expiry is never taken back (XCH-9): renewals and resumes only extend
        assert le.expires >= seen.expires.get(n, le.expires)
        # a judged lease stays judged (LEASE-8, LEASE-10)
        if n in seen.outcome:
            assert (le.state, le.reason, le.checked) == seen.outcome[n]
        if le.state is LeaseState.VERIFYING:
            assert le.output is not None
            assert le.verify_by == seen.verify_from[n] + VERIFY_TIMEOUT_MS  # LEASE-12
    # 2. an excluded worker stays excluded
    assert seen.excluded <= job.excluded_workers()
    assert job.rejected == sum(le.state is LeaseState.REJECTED for le in job.leases.values())


def remember(job: RequesterJob, seen: Seen) -> None:
    for n, le in job.leases.items():
        seen.times[n] = (le.worker, le.granted, le.budget_end)
        seen.expires[n] = le.expires
        if le.state in DEAD or le.state is LeaseState.ACCEPTED:
            seen.outcome[n] = (le.state, le.reason, le.checked)
    seen.excluded |= job.excluded_workers()


def check_grant(job: RequesterJob, ev: tuple[Any, ...], d: Any, now: int,
                seen: Seen, numbers_before: set[int]) -> None:
    """Invariant 2 and LEASE-3's grant."""
    if ev[0] != "claim" or not isinstance(d, Grant):
        return
    _, worker, price, qualified = ev
    lease = d.lease
    assert lease.worker == worker and lease.state in LIVE
    assert worker not in seen.excluded  # LEASE-10
    if lease.number in numbers_before:
        return  # the same lease again: a repeated claim is idempotent
    assert qualified, "a lease for an unqualified claimant"
    assert price <= MAX_PRICE and now < job.deadline and lease.price == price
    assert lease.granted == now
    assert lease.expires == min(now + job.spec.lease_s * 1000, lease.budget_end)


def check_clock(job: RequesterJob, now: int, off: int) -> None:
    """Invariant 5: ``next_deadline`` is the first time a tick changes anything."""
    nd = job.next_deadline()
    assert (nd is None) == job.terminal
    if nd is None:
        return
    probe = reload(job, off)
    if nd - 1 >= now:
        before = lease_states(probe)
        assert probe.on_tick(nd - 1) == []
        assert lease_states(probe) == before
        probe.on_tick(nd)
        assert lease_states(probe) != before, "nothing was due at next_deadline()"
    else:  # events came in past a due time before its tick: the next tick acts at once
        before = lease_states(probe)
        probe.on_tick(now)
        assert lease_states(probe) != before


def check_job_step(job: RequesterJob, ev: tuple[Any, ...], d: Any, now: int, off: int,
                   seen: Seen, numbers_before: set[int], was: JobState) -> None:
    if ev[0] == "result" and isinstance(d, Verify):
        seen.verify_from[d.lease.number] = now
    if ev[0] == "restart":
        for le in d:  # verifications start again, with a new deadline (LEASE-12)
            assert le.state is LeaseState.VERIFYING
            seen.verify_from[le.number] = now
        assert {le.number for le in d} == {le.number for le in job.live_leases()
                                           if le.state is LeaseState.VERIFYING}
    check_leases(job, seen)
    check_grant(job, ev, d, now, seen, numbers_before)
    if ev[0] == "tick":
        # 4. no verification is older than VERIFY_TIMEOUT_MS after a tick
        for le in job.live_leases():
            if le.state is LeaseState.VERIFYING:
                assert now < le.verify_by
                assert now - seen.verify_from[le.number] < VERIFY_TIMEOUT_MS
            else:
                assert now <= le.expires  # LEASE-9: an active lease past its expiry is gone
        if not job.terminal:
            nd = job.next_deadline()
            assert nd is not None and nd > now
    check_clock(job, now, off)
    if not job.terminal:
        assert job.state is settled(job)  # 6. LEASE-2's settling
    else:
        assert not job.live_leases()  # a terminal job holds no live lease
    # 7. the job gives up exactly when MAX_REJECTED_RESULTS distinct workers agree
    agree = agreeing_rejections(job)
    if agree >= MAX_REJECTED_RESULTS:
        assert job.state is JobState.FAILED
    if job.state is JobState.FAILED and was is not JobState.FAILED and now < job.deadline:
        assert agree >= MAX_REJECTED_RESULTS, "failed early without agreeing rejections"
    if job.state is JobState.COMPLETED:
        assert len(job.accepted_leases()) == job.spec.redundancy
        assert job.completed_at is not None
    remember(job, seen)


def run_job(params: dict[str, Any], steps: list[tuple[int, tuple[Any, ...]]]) -> None:
    off = params["off"]
    spec = make_spec(redundancy=params["redundancy"], lease_s=params["lease_s"],
                     life_ms=params["life_ms"])
    now = T0 + off
    job = RequesterJob.new(b"\x12\x20" + b"\x01" * 32, spec, b"raw", now,
                           spec.deadline + off)
    seen = Seen()
    for gap, drawn in steps:
        now += gap
        ev = resolve(job, drawn, params["broken"])
        if ev is None:
            continue
        # 8. the stored row loads into a job that is the same and decides the same
        clone = reload(job, off)
        assert snapshot(clone) == snapshot(job) and clone.leases == job.leases
        was, numbers_before = job.state, set(job.leases)
        job, d = apply(job, ev, now, off)
        clone, d2 = apply(clone, ev, now, off)
        assert norm(d) == norm(d2), ev
        assert snapshot(clone) == snapshot(job), ev
        check_job_step(job, ev, d, now, off, seen, numbers_before, was)
    event("before the deadline: " + job.state.value + (
        " (gave up)" if agreeing_rejections(job) >= MAX_REJECTED_RESULTS else ""))
    event("leases: %d" % min(len(job.leases), 4))
    # 5. every job ends: a tick at its deadline leaves it terminal
    now = max(now, job.deadline)
    was, numbers_before = job.state, set(job.leases)
    d = job.on_tick(now)
    check_job_step(job, ("tick",), d, now, off, seen, numbers_before, was)
    assert job.terminal and job.next_deadline() is None
    assert job.on_tick(now + 1) == []


@given(job_runs)
@example(({"redundancy": 2, "lease_s": 10, "life_ms": 600_000, "off": 0, "broken": True}, [
    # three workers agree on a failing output while a fourth lease is being verified
    (0, ("claim", 0, 50, True)), (0, ("claim", 1, 50, True)),
    (1, ("result", 0, 0, 0)), (1, ("result", 1, 0, 0)),
    (1, ("checked", 0, False, True)), (1, ("checked", 0, False, True)),
    (1, ("claim", 2, 50, True)), (1, ("claim", 3, 50, True)),
    (1, ("result", 2, 0, 0)), (1, ("result", 3, 0, 1)),
    (1, ("checked", 0, False, True)), (1, ("checked", 0, True, True)),
]))
def test_requester_job_invariants_hold_after_every_event(
        run: tuple[dict[str, Any], list[tuple[int, tuple[Any, ...]]]]) -> None:
    run_job(*run)


def test_giving_up_ends_the_other_live_leases() -> None:
    """Regression: a job that gave up (LEASE-8) while another lease was verifying used to
    keep that lease ``verifying``; its verdict then raised ``AssertionError`` ("no
    transition from failed on verified") in the requester."""
    job = RequesterJob.new(b"j", make_spec(redundancy=2), b"raw", T0)
    for w, o in ((0, 0), (1, 0)):
        number = job.on_claim(KEYS[w], 50, T0, True)
        assert isinstance(number, Grant)
        assert isinstance(job.on_result(KEYS[w], number.lease.number, OUTS[o], T0 + 1),
                          Verify)
        job.on_verified(number.lease.number, False, "bad_field", T0 + 2)
    assert isinstance(job.on_claim(KEYS[2], 50, T0 + 3, True), Grant)
    assert isinstance(job.on_claim(KEYS[3], 50, T0 + 3, True), Grant)
    assert isinstance(job.on_result(KEYS[2], 3, OUTS[0], T0 + 4), Verify)
    assert isinstance(job.on_result(KEYS[3], 4, OUTS[1], T0 + 4), Verify)
    job.on_verified(3, False, "bad_field", T0 + 5)
    assert job.state is JobState.FAILED
    assert job.leases[4].state is LeaseState.EXPIRED
    assert job.leases[4].reason == Reason.BAD_STATE.value
    assert job.on_verified(4, True, "", T0 + 6).state is LeaseState.EXPIRED  # no crash
    assert job.on_verified(4, False, "bad_field", T0 + 6).state is LeaseState.EXPIRED
    assert not job.live_leases() and job.next_deadline() is None
    # the verdict that was due reads "not accepted, bad_state"; a result sent again is
    # refused as for any lease that is over (LEASE-5)
    d = job.on_result(KEYS[3], 4, OUTS[1], T0 + 7)
    assert isinstance(d, Refuse) and d.reason is Reason.LEASE_EXPIRED


# == the requester over its jobs, with offers (Requester, spec 04 §3.3, §4) =================

FIT = Capacity(kinds=frozenset({"matmul"}), cores=8, mem=1 << 30, gpus=0, gpu_mem=0,
               prices={"matmul": 50})
# the last two are in the table but cannot run the jobs: one asks too much, one runs wasm
TABLE = tuple(Candidate(k.hex(), k, c) for k, c in zip(KEYS, (
    FIT, FIT, FIT, Capacity(kinds=frozenset({"matmul"}), cores=8, mem=1 << 30, gpus=0,
                            gpu_mem=0, prices={"matmul": MAX_PRICE + 1}),
    Capacity(kinds=frozenset({"wasm"}), cores=8, mem=1 << 30, gpus=0, gpu_mem=0)),
    strict=True))
JOBS = 2
MAX_OUTPUT = 1 << 20

jobs_i = st.integers(0, JOBS - 1)
requester_events = weighted(
    (3, st.tuples(st.just("claim"), jobs_i, st.integers(0, 2), st.just(True))),
    (2, st.tuples(st.just("claim"), jobs_i, workers, firsts)),
    (1, st.tuples(st.just("heartbeat"), jobs_i, workers, picks)),
    (2, st.tuples(st.just("result"), jobs_i, workers, picks, outputs,
                  st.sampled_from((100, 100, MAX_OUTPUT + 1)))),
    (2, st.tuples(st.just("checked"), st.integers(0, 3), oks, firsts)),
    (1, st.tuples(st.just("timer"))),
    (2, st.tuples(st.just("offers"), st.integers(1, len(TABLE)))),
    (2, st.tuples(st.just("offer_done"), st.integers(0, 3), firsts)),
    (1, st.tuples(st.just("restart"))),
)
requester_runs = st.tuples(
    st.lists(st.tuples(st.integers(1, 3), st.sampled_from((1, 10)),
                       st.integers(VERIFY_TIMEOUT_MS, 5 * VERIFY_TIMEOUT_MS)),
             min_size=JOBS, max_size=JOBS),
    st.lists(st.tuples(gaps, requester_events), min_size=8, max_size=48))


@dataclass
class Shell:
    """What a shell has in flight for the requester machine."""

    offers: list[Offer] = field(default_factory=list)
    checks: list[CheckOutput] = field(default_factory=list)
    finished: Counter[bytes] = field(default_factory=Counter)


def check_effects(m: Requester, shell: Shell, effects: list[Effect],
                  changed: set[bytes]) -> None:
    for e in effects:
        if isinstance(e, CheckOutput):
            lease = m.jobs[e.job].leases[e.lease]
            assert lease.state is LeaseState.VERIFYING
            assert (e.worker, e.output, e.by) == (lease.worker, lease.output, lease.verify_by)
            shell.checks.append(e)
        elif isinstance(e, Finished):
            assert m.jobs[e.job].terminal
            shell.finished[e.job] += 1
    # XCH-9: a change of a job's state or leases is stored before it is revealed
    persisted = {e.job for e in effects if isinstance(e, Persist)}
    assert changed <= persisted, "a change that is not persisted"


def check_offers(m: Requester, shell: Shell, table: tuple[Candidate, ...],
                 offers: list[Offer], now: int) -> None:
    by_peer = {c.peer: c for c in table}
    for o in offers:
        job = m.jobs[o.job]
        key = by_peer[o.worker].key
        # at most one offer in flight per job, and per worker (OFR-2)
        assert all(f.job != o.job for f in shell.offers), "a second offer for a job"
        assert all(f.worker != o.worker for f in shell.offers)
        # never to a worker that holds a live lease of the job or is excluded (LEASE-10)
        assert key not in {le.worker for le in job.live_leases()}
        assert key not in job.excluded_workers()
        assert unmet(by_peer[o.worker].capacity, job.spec) is None  # OFR-1
        assert not job.terminal and job.needs_workers() > 0
        shell.offers.append(o)


def fingerprint(m: Requester) -> dict[bytes, tuple[Any, ...]]:
    return {j.id: (j.state, tuple((n, le.state) for n, le in sorted(j.leases.items())))
            for j in m.jobs.values()}


def run_requester(shapes: list[tuple[int, int, int]],
                  steps: list[tuple[int, tuple[Any, ...]]]) -> None:
    off = 7_000  # local timeline minus wall clock
    now = T0 + off
    specs = [make_spec(redundancy=r, lease_s=ls, life_ms=life, nonce=i)
             for i, (r, ls, life) in enumerate(shapes)]
    ids = [b"\x12\x20" + bytes([i + 1]) * 32 for i in range(JOBS)]
    m = Requester(NET, rng=random.Random(0), max_output_bytes=MAX_OUTPUT)
    shell = Shell()
    for job_id, spec in zip(ids, specs, strict=True):
        assert m.add(RequesterJob.new(job_id, spec, b"raw", now, spec.deadline + off),
                     now) == [Persist(job_id)]
    seen = {job_id: Seen() for job_id in ids}
    offers_made = 0
    d: Any
    for gap, ev in steps:
        now += gap
        op = ev[0]
        before = fingerprint(m)
        effects: list[Effect] = []
        if op == "claim":
            _, j, w, has_ad = ev
            job = m.jobs[ids[j]]
            cap = TABLE[w].capacity if has_ad else None
            numbers = set(job.leases)
            d, effects = m.on_claim(ids[j], KEYS[w], TABLE[w].capacity.price_for("matmul"),
                                    now, cap)
            qualified = cap is not None and unmet(cap, job.spec) is None
            check_grant(job, ("claim", KEYS[w], TABLE[w].capacity.price_for("matmul"),
                              qualified), d, now, seen[ids[j]], numbers)
        elif op == "heartbeat":
            _, j, w, pick = ev
            m.on_heartbeat(ids[j], *sender(m.jobs[ids[j]], w, pick), 500, now)
        elif op == "result":
            _, j, w, pick, o, size = ev
            key, number = sender(m.jobs[ids[j]], w, pick)
            d, effects = m.on_result(ids[j], key, number, OUTS[o], size, now)
            if isinstance(d, Verify):
                seen[ids[j]].verify_from[number] = now
            if size > MAX_OUTPUT:  # VER-1: judged at once, never fetched
                assert not any(isinstance(e, CheckOutput) for e in effects)
        elif op == "checked":
            if not shell.checks:
                continue
            c = shell.checks.pop(ev[1] % len(shell.checks))
            _, effects = m.on_checked(c.job, c.lease, ev[2], "" if ev[2] else "bad_field",
                                      now, ev[3])
        elif op == "timer":
            effects = m.on_timer(now, now - off)
            nd = m.next_deadline(now, now - off)
            assert nd is None or nd > now
        elif op == "offers":
            table = TABLE[: ev[1]]
            wanted = m.wants_offers()
            offers = m.offers(table, now)
            assert wanted or not offers  # the shell skips offers() when not wanted
            check_offers(m, shell, table, offers, now)
            offers_made += len(offers)
        elif op == "offer_done":
            if not shell.offers:
                continue
            o = shell.offers.pop(ev[1] % len(shell.offers))
            m.on_offer_done(o.job, o.worker, now, busy=ev[2])
        else:  # a restart: what was in flight is gone; the jobs load from their rows
            rows = {j.id: j.to_row(-off) for j in m.jobs.values()}
            m = Requester(NET, rng=random.Random(0), max_output_bytes=MAX_OUTPUT)
            shell.offers.clear()
            shell.checks.clear()
            for job_id, spec in zip(ids, specs, strict=True):
                job = RequesterJob.from_row(job_id, spec, b"raw", rows[job_id], off)
                got = m.add(job, now, resumed=True)
                for e in got:
                    if isinstance(e, CheckOutput):
                        seen[job_id].verify_from[e.lease] = now
                effects += got
        after = fingerprint(m)
        changed = set() if op in ("heartbeat", "restart") else {
            j for j in ids if before[j] != after[j]}
        check_effects(m, shell, effects, changed)
        for job_id in ids:
            check_leases(m.jobs[job_id], seen[job_id])
            remember(m.jobs[job_id], seen[job_id])
    for job in m.jobs.values():
        event("job before its deadline: " + job.state.value)
    event("offers: %d" % min(offers_made, 5))
    # every job ends, and is reported finished once
    now = max([now, *(j.deadline for j in m.jobs.values())])
    check_effects(m, shell, m.on_timer(now, now - off), set())
    assert all(j.terminal for j in m.jobs.values())
    assert all(shell.finished[job_id] == 1 for job_id in ids), shell.finished
    # what is left to do is forgetting them, once their retention runs out
    while (nd := m.next_deadline(now, now - off)) is not None:
        assert nd > now and m.jobs
        now = nd
        assert m.on_timer(now, now - off) == []
    assert m.jobs == {}


@given(requester_runs)
def test_requester_offers_and_effects_hold_after_every_event(
        run: tuple[list[tuple[int, int, int]], list[tuple[int, tuple[Any, ...]]]]) -> None:
    run_requester(*run)


def test_a_job_is_reported_finished_once() -> None:
    """Regression: every later claim, or verdict, of a terminal job repeated ``Finished``
    (the shell counted and logged the job's end again each time)."""
    m = Requester(NET, rng=random.Random(0), max_output_bytes=MAX_OUTPUT)
    job_id = b"\x12\x20" + b"\x01" * 32
    m.add(RequesterJob.new(job_id, make_spec(), b"raw", T0), T0)
    d: Any
    d, _ = m.on_claim(job_id, KEYS[0], 50, T0, FIT)
    assert isinstance(d, Grant)
    d, _ = m.on_result(job_id, KEYS[0], 1, OUTS[0], 100, T0 + 1)
    assert isinstance(d, Verify)
    _, effects = m.on_checked(job_id, 1, True, "", T0 + 2, True)
    assert Finished(job_id) in effects
    d, effects = m.on_claim(job_id, KEYS[1], 50, T0 + 3, FIT)
    assert isinstance(d, Refuse) and Finished(job_id) not in effects
    _, effects = m.on_checked(job_id, 1, True, "", T0 + 4, True)
    assert Finished(job_id) not in effects
    assert Finished(job_id) not in m.on_timer(T0 + 10**9, T0 + 10**9)


# == the worker (Worker, spec 04 §5.2) ======================================================

ME = b"\x09" * 32
REQUESTER = b"\x08" * 32
WORK_JOBS = tuple(SignedJob(spec=make_spec(lease_s=ls, nonce=i), raw=b"job %d" % i,
                            requester=REQUESTER) for i, ls in enumerate((1, 10, 10)))
PROFILE = Capacity(kinds=frozenset({"matmul"}), cores=8, mem=1 << 30, gpus=0, gpu_mem=0,
                   prices={"matmul": 50})
FINAL = frozenset(WorkState) - OPEN
# (state before, state after) of one step, as TRANSITIONS allows; the rest are a take
# (a new claim) and a claim refused or failed (the work is dropped)
STEPS = {(s, t) for (s, _), t in TRANSITIONS.items()}

work_j = st.integers(0, len(WORK_JOBS) - 1)
worker_events = weighted(
    (2, st.tuples(st.just("offer"), work_j)),
    (2, st.tuples(st.just("claim_answer"), work_j, st.sampled_from((True, True, False)),
                  weighted((4, st.integers(5_000, 40_000)), (1, st.integers(-2_000, 5_000))))),
    (2, st.tuples(st.just("inputs"), work_j, st.sampled_from((True, True, False)))),
    (2, st.tuples(st.just("executed"), work_j, st.sampled_from((True, True, False)))),
    (3, st.tuples(st.just("heartbeat_answer"), work_j,
                  st.sampled_from(("renewed", "renewed", "refused", "failed")),
                  st.integers(0, 40_000))),
    (2, st.tuples(st.just("result_answer"), work_j,
                  st.sampled_from(("accepted", "rejected", "refused", "busy", "failed")))),
    (3, st.tuples(st.just("tick"), firsts)),  # True: when the worker's timer is due
    (1, st.tuples(st.just("restart"))),
)
# A work's life in a row: offered, leased, inputs fetched, executed; then the answers.
lives = work_j.map(lambda j: [(0, ("offer", j)), (5, ("claim_answer", j, True, 30_000)),
                              (100, ("inputs", j, True)), (100, ("executed", j, True))])
worker_steps = weighted((6, st.tuples(gaps, worker_events).map(lambda s: [s])), (1, lives))
worker_runs = st.tuples(st.integers(1, 3), st.lists(worker_steps, min_size=8, max_size=40).map(
    lambda parts: [s for part in parts for s in part]))


@dataclass
class Flight:
    """Per job: what the shell has started for the worker and not yet answered."""

    claims: set[int] = field(default_factory=set)
    fetches: set[int] = field(default_factory=set)
    executions: set[int] = field(default_factory=set)
    heartbeats: Counter[int] = field(default_factory=Counter)
    results: Counter[int] = field(default_factory=Counter)

    def clear(self) -> None:
        for s in (self.claims, self.fetches, self.executions, self.heartbeats, self.results):
            s.clear()


def states(w: Worker) -> dict[int, WorkState | None]:
    return {j: (w.work[sj.id].state if sj.id in w.work else None)
            for j, sj in enumerate(WORK_JOBS)}


def index_of(job_id: bytes) -> int:
    return next(j for j, sj in enumerate(WORK_JOBS) if sj.id == job_id)


def deliver(w: Worker, fl: Flight, ev: tuple[Any, ...], now: int,
            lease_no: list[int]) -> list[Any] | None:
    """Hand the worker an event its shell could deliver now, or None if none can be: an
    answer goes to job ``ev[1]`` if it has such an exchange or task in flight, else to one
    that has."""
    op = ev[0]
    if op == "tick":
        return w.on_timer(now)
    if op == "offer":
        sj = WORK_JOBS[ev[1]]
        price, why = w.take(sj, now, sj.spec.deadline)
        if why is None:
            assert price == 50
            fl.claims.add(ev[1])
        else:
            assert price is None
        return []
    pending = {"claim_answer": fl.claims, "inputs": fl.fetches,
               "executed": fl.executions, "heartbeat_answer": +fl.heartbeats,
               "result_answer": +fl.results}[op]
    if not pending:
        return None
    j = ev[1] if ev[1] in pending else sorted(pending)[ev[1] % len(pending)]
    sj = WORK_JOBS[j]
    if op == "claim_answer":
        fl.claims.discard(j)
        if not ev[2]:
            return w.on_claim_answer(sj.id, None, 0, now)
        lease_no[0] += 1
        lease = JobLease(net=NET, job=sj.id, worker=ME, lease=lease_no[0],
                         expires=now + ev[3], price=50)
        assert w.lease_problem(sj, REQUESTER, lease) is None
        return w.on_claim_answer(sj.id, lease, now + ev[3], now)
    if op == "inputs":
        fl.fetches.discard(j)
        return w.on_inputs(sj.id, ev[2], "" if ev[2] else "not_found", now)
    if op == "executed":
        fl.executions.discard(j)
        return w.on_executed(sj.id, OUTS[j] if ev[2] else None, 100, {}, "" if ev[2]
                             else "exec_failed", now)
    if op == "heartbeat_answer":
        fl.heartbeats[j] -= 1
        kind = ev[2]
        return w.on_heartbeat_answer(sj.id, now + ev[3] if kind == "renewed" else None,
                                     kind == "refused", now)
    assert op == "result_answer"
    fl.results[j] -= 1
    kind = ev[2]
    accepted = {"accepted": True, "rejected": False}.get(kind)
    refused = {"refused": Reason.LEASE_EXPIRED.value, "busy": Reason.BUSY.value}.get(kind)
    return w.on_result_answer(sj.id, accepted, refused, now)


def restart(w: Worker, now: int) -> tuple[Worker, list[Any]]:
    """Stored and loaded as the shell does (WRK-9): open work past its claim, by its row."""
    fresh = Worker(NET, ME, PROFILE, w.concurrency, wall_time_s=w.wall_time_s)
    effects: list[Any] = []
    for old in w.work.values():
        if old.state in OPEN and old.state is not WorkState.CLAIMING:
            effects += fresh.resume(Work(job=old.job, state=old.state, lease=old.lease,
                                         price=old.price, expires=old.expires,
                                         budget_end=old.budget_end,
                                         history=list(old.history)), now)
    return fresh, effects


def check_worker_step(w: Worker, fl: Flight, effects: list[Any], now: int,
                      before: dict[int, WorkState | None], op: str) -> None:
    after = states(w)
    open_works = sum(s in OPEN for s in after.values())
    # WRK-2: never more open works than the concurrency; free is what is left
    assert open_works <= w.concurrency
    assert w.free == w.concurrency - open_works == w.concurrency - w.active >= 0
    per_job: dict[int, list[Any]] = {}
    for e in effects:
        per_job.setdefault(index_of(e.job), []).append(e)
    for j, (s, t) in enumerate(zip(before.values(), after.values(), strict=True)):
        mine = per_job.get(j, [])
        if op == "restart":
            # work past its claim resumes from the fetch or is given up; the rest is gone
            if s in OPEN and s is not WorkState.CLAIMING:
                assert t in (WorkState.FETCHING, WorkState.LOST)
                assert (s, t) in STEPS
            else:
                assert t is None and not mine
            if t is WorkState.LOST:
                assert not any(isinstance(e, Stop) for e in mine)  # nothing runs yet
            continue
        if s != t:
            assert (s, t) in STEPS or (t is WorkState.CLAIMING and s not in OPEN) or (
                s is WorkState.CLAIMING and t is None) or (
                s in FINAL and t is None and op == "tick"), (s, t)  # forgotten
        if t in FINAL and s in OPEN:
            # reaching a final state stops whatever runs for the job, last of its effects
            assert mine and isinstance(mine[-1], Stop), mine
        elif t in FINAL or t is None:
            assert not mine, mine  # nothing more for a job that is over
        else:
            assert not any(isinstance(e, Stop) for e in mine)
    for e in effects:
        work = w.work[e.job]
        if isinstance(e, FetchInputs):
            assert work.state is WorkState.FETCHING
        elif isinstance(e, Execute):
            assert work.state is WorkState.RUNNING
            # LEASE-11: an execution does not outlive the lease's budget
            assert e.wall_time_s <= max(0.1, (work.budget_end - now) / 1000)
        elif isinstance(e, SendHeartbeat):
            assert work.state in OPEN and work.state is not WorkState.CLAIMING
            assert e.lease == work.lease
        elif isinstance(e, SendResult):
            assert work.state is WorkState.SUBMITTING and e.output == work.output
    for e in effects:  # the shell starts what the effects ask for
        j = index_of(e.job)
        if isinstance(e, FetchInputs):
            fl.fetches.add(j)
            fl.executions.discard(j)
        elif isinstance(e, Execute):
            fl.executions.add(j)
        elif isinstance(e, Stop):
            fl.fetches.discard(j)
            fl.executions.discard(j)
        elif isinstance(e, SendHeartbeat):
            fl.heartbeats[j] += 1
        elif isinstance(e, SendResult):
            fl.results[j] += 1
    nd = w.next_deadline()
    live = [x for x in w.work.values() if x.state in OPEN and x.state is not WorkState.CLAIMING]
    finished = [x for x in w.work.values() if x.state not in OPEN]
    assert (nd is None) == (not live and not finished)


def run_worker(concurrency: int, steps: list[tuple[int, tuple[Any, ...]]]) -> None:
    w = Worker(NET, ME, PROFILE, concurrency, wall_time_s=30.0)
    fl = Flight()
    now = T0
    lease_no = [0]
    reached: set[WorkState] = set()
    for gap, ev in steps:
        now += gap
        due = w.next_deadline()
        if ev[0] == "tick" and ev[1] and due is not None:
            now = max(now, due)  # the shell's timer fires at next_deadline()
        before = states(w)
        if ev[0] == "restart":
            w, effects = restart(w, now)
            fl.clear()
        else:
            got = deliver(w, fl, ev, now, lease_no)
            if got is None:
                continue
            effects = got
        check_worker_step(w, fl, effects, now, before, ev[0])
        reached |= {x.state for x in w.work.values()}
    for s in sorted(reached):
        event("reached " + s.value)
    # with no more answers, time alone ends every work (WRK-6, XCH-4)
    for _ in range(4):
        before = states(w)
        now = max([now + 1, *(t for t in [w.next_deadline()] if t is not None)])
        check_worker_step(w, fl, w.on_timer(now), now, before, "tick")
    before = states(w)
    now += 10**7
    check_worker_step(w, fl, w.on_timer(now), now, before, "tick")
    assert all(x.state in FINAL or x.state is WorkState.CLAIMING for x in w.work.values())


@given(worker_runs)
def test_worker_invariants_hold_after_every_event(
        run: tuple[int, list[tuple[int, tuple[Any, ...]]]]) -> None:
    run_worker(*run)
