"""The market machines' maps are bounded: terminal entries are forgotten after the
retention time, each map has a cap, and an open job is never forgotten."""

from __future__ import annotations

import random

from p2pnode.jobs.market import RequesterJob
from p2pnode.jobs.requester import Requester
from p2pnode.jobs.worker import MAX_SEEN, Worker, WorkState
from p2pnode.wire.reasons import Reason
from tests.jobs.test_market_properties import (
    FIT,
    KEYS,
    ME,
    NET,
    OUTS,
    PROFILE,
    T0,
    WORK_JOBS,
    make_spec,
)


def job_id(i: int) -> bytes:
    return b"\x12\x20" + i.to_bytes(32, "big")


def finish(m: Requester, jid: bytes, now: int) -> None:
    m.on_claim(jid, KEYS[0], 50, now, FIT)
    m.on_result(jid, KEYS[0], 1, OUTS[0], 100, now)
    m.on_checked(jid, 1, True, "", now, True)
    assert m.jobs[jid].terminal


def test_requester_forgets_terminal_jobs_after_the_retention_and_keeps_open_ones() -> None:
    m = Requester(NET, rng=random.Random(0), retention_ms=60_000)
    done, open_ = job_id(1), job_id(2)
    for jid in (done, open_):
        m.add(RequesterJob.new(jid, make_spec(life_ms=10**9), b"raw", T0, T0 + 10**9), T0)
    finish(m, done, T0 + 10)
    assert m.next_deadline(T0 + 10, T0 + 10) <= T0 + 10 + 60_000
    m.on_timer(T0 + 60_009, T0 + 60_009)
    assert done in m.jobs
    m.on_timer(T0 + 60_010, T0 + 60_010)
    assert done not in m.jobs and open_ in m.jobs
    assert m.forgotten == {"retention": 1, "cap": 0}


def test_requester_at_its_cap_lets_the_oldest_terminal_job_go_then_refuses() -> None:
    m = Requester(NET, rng=random.Random(0), max_jobs=3)
    for i in range(3):
        assert m.room() is None
        m.add(RequesterJob.new(job_id(i), make_spec(nonce=i), b"raw", T0, T0 + 10**9), T0)
    finish(m, job_id(1), T0 + 1)
    finish(m, job_id(0), T0 + 2)
    assert m.room() is None  # job 1 ended first: it goes
    assert set(m.jobs) == {job_id(0), job_id(2)} and m.forgotten["cap"] == 1
    m.add(RequesterJob.new(job_id(3), make_spec(nonce=3), b"raw", T0, T0 + 10**9), T0 + 3)
    assert m.room() is None and job_id(0) not in m.jobs
    m.add(RequesterJob.new(job_id(4), make_spec(nonce=4), b"raw", T0, T0 + 10**9), T0 + 4)
    assert m.room() is Reason.LIMIT_EXCEEDED and m.refused == 1  # three open jobs
    assert set(m.jobs) == {job_id(2), job_id(3), job_id(4)}
    # a job loaded from storage that is not terminal is taken even at the cap
    m.add(RequesterJob.new(job_id(5), make_spec(nonce=5), b"raw", T0, T0 + 10**9), T0 + 5,
          resumed=True)
    assert len(m.jobs) == 4


def test_requester_backoffs_do_not_outlive_their_time() -> None:
    m = Requester(NET, rng=random.Random(0))
    jid = job_id(1)
    m.add(RequesterJob.new(jid, make_spec(life_ms=10**9), b"raw", T0, T0 + 10**9), T0)
    m._offered[(jid, "peer")] = T0 + 5
    m._busy_until["peer"] = T0 + 5
    m.on_timer(T0 + 5, T0 + 5)
    assert m._offered == {} and m._busy_until == {}


def leased_work(w: Worker, i: int, now: int) -> bytes:
    sj = WORK_JOBS[i]
    price, why = w.take(sj, now, now + 10**9)
    assert why is None and price is not None
    w.on_claim_answer(sj.id, None, 0, now)  # refused: the slot is free, nothing kept
    assert sj.id not in w.work
    return sj.id


def test_worker_forgets_finished_work_by_age_and_by_cap() -> None:
    w = Worker(NET, ME, PROFILE, 4, retention_ms=1_000, max_finished=2)
    now = T0
    for i in range(3):
        sj = WORK_JOBS[i]
        w.take(sj, now, now + 10**9)
        w.work[sj.id].state = WorkState.FAILED
        w.work[sj.id].history.append((now + i, "fetch_failed", ""))
    assert w.next_deadline() == now + 1_000
    w.on_timer(now + 10)
    assert set(w.work) == {WORK_JOBS[1].id, WORK_JOBS[2].id}
    assert w.forgotten == {"retention": 0, "cap": 1}
    w.on_timer(now + 1_001)
    assert set(w.work) == {WORK_JOBS[2].id}
    assert w.forgotten == {"retention": 1, "cap": 1}
    w.on_timer(now + 1_002)
    assert w.work == {} and w.next_deadline() is None
    assert leased_work(w, 0, now)


def test_worker_seen_cache_is_capped_and_wakes_the_timer_when_full() -> None:
    w = Worker(NET, ME, PROFILE, 1)
    for i in range(MAX_SEEN):
        assert w.wants(job_id(i), T0 + i)
    assert not w.wants(job_id(MAX_SEEN), T0 + MAX_SEEN) and w.seen_full == 1
    due = w.next_deadline()
    assert due is not None
    w.on_timer(due)
    assert w.wants(job_id(MAX_SEEN), due)
