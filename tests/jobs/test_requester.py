"""The requester machine over its jobs (spec 04 §3.3, §4), driven by event scripts."""

from __future__ import annotations

import random

from p2pnode.identity import Identity, peer_id_str
from p2pnode.jobs import discovery
from p2pnode.jobs.market import Decided, Grant, JobState, LeaseState, Refuse, RequesterJob, Verify
from p2pnode.jobs.matching import Capacity
from p2pnode.jobs.model import JobSpec, Requirements, SignedJob
from p2pnode.jobs.requester import (
    DHT_PUBLISH_DELAY_MS,
    CheckOutput,
    Finished,
    Offer,
    Persist,
    Provide,
    PutRecord,
    Requester,
)
from p2pnode.wire.reasons import Reason

T0 = 1_700_000_000_000
ALICE = Identity.generate()
W1, W2 = Identity.generate().public_key, Identity.generate().public_key
FIT = Capacity(kinds=frozenset({"matmul"}), cores=8, mem=1 << 34, gpus=0, gpu_mem=0)
OUT = b"\x12\x20" + b"\xaa" * 32


def machine(**kw: object) -> tuple[Requester, bytes]:
    base: dict[str, object] = dict(
        net="t", kind="matmul", inputs=(), params=(), req=Requirements(cores=2),
        max_price=100, created=T0, deadline=T0 + 600_000, lease_s=10, redundancy=1,
        nonce=b"\x00" * 16)
    base.update(kw)
    sj = SignedJob.open(JobSpec(**base).seal(ALICE))  # type: ignore[arg-type]
    m = Requester("t", rng=random.Random(1), max_output_bytes=1000)
    assert m.add(RequesterJob.new(sj.id, sj.spec, sj.raw, T0), T0) == [Persist(sj.id)]
    return m, sj.id


def test_a_claim_needs_a_qualifying_ad() -> None:
    m, j = machine()
    d, eff = m.on_claim(j, W1, 10, T0, None)
    assert isinstance(d, Refuse) and d.reason is Reason.REQUIREMENTS_UNMET and eff == []
    small = Capacity(kinds=frozenset({"matmul"}), cores=1, mem=0, gpus=0, gpu_mem=0)
    d, _ = m.on_claim(j, W1, 10, T0, small)
    assert isinstance(d, Refuse) and d.reason is Reason.REQUIREMENTS_UNMET
    d, eff = m.on_claim(j, W1, 10, T0, FIT)
    assert isinstance(d, Grant) and eff == [Persist(j)]


def test_an_oversized_result_is_judged_without_a_fetch_and_does_not_count() -> None:
    m, j = machine()
    m.on_claim(j, W1, 10, T0, FIT)
    d, eff = m.on_result(j, W1, 1, OUT, 1001, T0 + 1)
    assert isinstance(d, Decided) and d.lease.reason == Reason.TOO_LARGE.value
    assert not any(isinstance(e, CheckOutput) for e in eff)
    assert m.jobs[j].state is JobState.PUBLISHED and not m.jobs[j].leases[1].checked


def test_a_result_is_checked_by_its_deadline_and_a_resend_awaits() -> None:
    m, j = machine()
    m.on_claim(j, W1, 10, T0, FIT)
    d, eff = m.on_result(j, W1, 1, OUT, 10, T0 + 1)
    assert isinstance(d, Verify)
    check = next(e for e in eff if isinstance(e, CheckOutput))
    assert check.by == d.lease.verify_by and m.next_deadline(T0 + 1, T0 + 1) <= check.by
    again, _ = m.on_result(j, W1, 1, OUT, 10, T0 + 2)
    assert type(again).__name__ == "Await"
    lease, eff = m.on_checked(j, 1, True, "", T0 + 3, True)
    assert lease is not None and lease.state is LeaseState.ACCEPTED
    assert Finished(j) in eff


def test_publication_waits_for_offers_then_provides_each_bucket() -> None:
    m, j = machine()
    assert not any(isinstance(e, PutRecord) for e in m.on_timer(T0 + 1, T0 + 1))
    eff = m.on_timer(T0 + DHT_PUBLISH_DELAY_MS, T0 + DHT_PUBLISH_DELAY_MS)
    assert [e.key for e in eff if isinstance(e, PutRecord)] == [discovery.job_record_key(j)]
    assert m.on_timer(T0 + 3_000, T0 + 3_000) == []
    later = T0 + discovery.BUCKET_MS
    assert any(isinstance(e, Provide) for e in m.on_timer(later, later))


def test_offers_skip_leaseholders_and_the_excluded() -> None:
    from p2pnode.jobs.requester import Candidate

    m, j = machine(redundancy=2)
    table = [Candidate(peer_id_str(w), w, FIT) for w in (W1, W2)]
    m.on_claim(j, W1, 10, T0, FIT)
    m.on_heartbeat(j, W1, 1, 0, T0)
    offers = m.offers(table, T0)
    assert offers == [Offer(j, peer_id_str(W2))]
    assert m.offers(table, T0) == []  # one in flight per job
    m.on_offer_done(j, peer_id_str(W2), T0 + 1)
    assert m.offers(table, T0 + 2) == []  # W2 backs off, W1 holds a lease
    m.on_timer(T0 + 10_001, T0 + 10_001)  # W1's heartbeated lease expires: excluded
    assert m.candidates(m.jobs[j], table, T0 + 10_001) == [peer_id_str(W2)]
