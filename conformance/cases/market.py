"""Step vectors for the market machines (spec 04 §3.3, §4, §5, §6): the requester over its
jobs (``jobs/market``), the worker (``jobs/work``), VER-1's fetch policy (``jobs/fetch``)
and the routing of a first message (``jobs/dispatch``).

Each case is a list of timed events; the expected outputs are every decision and effect,
written by the reference (``conformance/reference_market.py``), as in consensus-specs'
fork-choice step tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from conformance.cases.common import ALICE, BOB, CAROL, NET, NOW_MS
from conformance.cases.jobs import DAVE, job
from conformance.model import Case, Inputs, reject, valid
from p2pnode.jobs.market import LEASE_BUDGET_PERIODS, VERIFY_TIMEOUT_MS
from p2pnode.jobs.messages import JobClaim, JobHeartbeat, JobLease, JobOffer
from p2pnode.jobs.model import JobSpec, Requirements
from p2pnode.jobs.worker import LEASE_GRACE_MS, VERDICT_WAIT_MS
from p2pnode.wire.cid import cid_of
from p2pnode.wire.reasons import Reason

T0 = NOW_MS
W1, W2, W3, W4 = (k.public_key.hex() for k in (BOB, CAROL, DAVE, ALICE))
OUT1, OUT2, OUT3 = (cid_of(b"output %d" % i).hex() for i in (1, 2, 3))
SM = job(created=T0, deadline=T0 + 600_000, lease_s=10)
MAX_OUT = 1 << 20
FIT = {"kinds": ["matmul"], "cores": 8, "mem": 32 << 30, "prices": {"matmul": 50}}
SMALL = {"kinds": ["matmul"], "cores": 1, "mem": 1 << 20}


def claim(at: int, worker: str = W1, price: int = 50,
          capacity: dict[str, Any] | None = FIT) -> dict[str, Any]:
    ev: dict[str, Any] = {"op": "claim", "at_ms": at, "worker": worker, "price": price}
    if capacity is not None:
        ev["capacity"] = capacity
    return ev


def hb(at: int, lease: int, worker: str = W1) -> dict[str, Any]:
    return {"op": "heartbeat", "at_ms": at, "worker": worker, "lease": lease, "progress": 0}


def result(at: int, lease: int, worker: str = W1, output: str = OUT1,
           size: int = 100) -> dict[str, Any]:
    return {"op": "result", "at_ms": at, "worker": worker, "lease": lease, "output": output,
            "size": size}


def checked(at: int, lease: int, ok: bool = True, reason: str = "",
            judged: bool = True) -> dict[str, Any]:
    return {"op": "checked", "at_ms": at, "lease": lease, "ok": ok, "reason": reason,
            "checked": judged}


def tick(at: int, wall: int | None = None) -> dict[str, Any]:
    return {"op": "tick", "at_ms": at, "wall_ms": at if wall is None else wall}


def _market(name: str, events: list[dict[str, Any]], desc: str, rules: tuple[str, ...],
            s: JobSpec = SM) -> Case:
    return Case(name, Inputs({"spec.cbor": s.seal(ALICE), "events.json": events},
                             {"max_output_bytes": MAX_OUT}), valid(), desc, rules)


def market() -> Iterator[Case]:
    yield _market("unqualified_claims_are_refused", [
        claim(T0, capacity=None), claim(T0 + 1, W2, capacity=SMALL),
        claim(T0 + 2, W3, capacity={**FIT, "kinds": ["wasm"]}), claim(T0 + 3, W4)],
        "a claimant with no live capability ad, one whose ad does not meet req, and one "
        "that does not run the kind are refused requirements_unmet; a qualified one gets "
        "the lease", ("LEASE-3",),
        s=job(created=T0, deadline=T0 + 600_000, lease_s=10, req=Requirements(cores=4)))
    yield _market("free_keys_cannot_fail_a_job", [
        claim(T0, W1), result(T0 + 1, 1, size=MAX_OUT + 1),
        claim(T0 + 2, W2), result(T0 + 3, 2, W2),
        checked(T0 + 4, 2, False, "hash_mismatch", judged=False),
        claim(T0 + 5, W3), result(T0 + 6, 3, W3), tick(T0 + VERIFY_TIMEOUT_MS + 6),
        claim(T0 + VERIFY_TIMEOUT_MS + 7, W4), result(T0 + VERIFY_TIMEOUT_MS + 8, 4, W4),
        checked(T0 + VERIFY_TIMEOUT_MS + 9, 4)],
        "an oversized result, a hash mismatch and a verification that runs out of time "
        "each reject their lease and exclude the worker, but none counts toward the job: "
        "the fourth worker completes it; leases and verdicts carry the lease's number, "
        "expiry, price, acceptance and reason; every decision follows from the events "
        "before it, in order", ("LEASE-8", "LEASE-12", "VER-1", "XCH-6", "XCH-7"))
    yield _market("agreeing_failures_give_up", [
        claim(T0, W1), result(T0 + 1, 1), checked(T0 + 2, 1, False, "bad_field"),
        claim(T0 + 3, W2), result(T0 + 4, 2, W2, OUT2), checked(T0 + 5, 2, False, "bad_field"),
        claim(T0 + 6, W3), result(T0 + 7, 3, W3), checked(T0 + 8, 3, False, "bad_field"),
        claim(T0 + 9, W4), result(T0 + 10, 4, W4), checked(T0 + 11, 4, False, "bad_field")],
        "rejections of checked outputs from distinct workers fail the job only once three "
        "agree on one output (two workers returned OUT2 and OUT1 first)",
        ("LEASE-8", "VER-3"))
    yield _market("proven_wrong_results_never_give_up", [
        claim(T0, W1), result(T0 + 1, 1), checked(T0 + 2, 1, False, "wrong_result"),
        claim(T0 + 3, W2), result(T0 + 4, 2, W2), checked(T0 + 5, 2, False, "bad_proof"),
        claim(T0 + 6, W3), result(T0 + 7, 3, W3), checked(T0 + 8, 3, False, "wrong_result"),
        claim(T0 + 9, W4)],
        "three distinct workers return one output that the proofs show is not the job's "
        "(wrong_result, bad_proof): the job is reassigned each time and a fourth worker "
        "still gets a lease", ("LEASE-8", "PRF-5"))
    yield _market("a_silent_expiry_is_forgiven_once", [
        claim(T0), tick(T0 + 10_001), claim(T0 + 10_002), tick(T0 + 20_003),
        claim(T0 + 20_004), claim(T0 + 20_005, W2), hb(T0 + 20_006, 3, W2),
        tick(T0 + 30_007), claim(T0 + 30_008, W2)],
        "a lease that expired without a heartbeat may never have reached its worker: the "
        "worker may claim once more; after a second silent expiry, or an expiry after a "
        "heartbeat, it is excluded", ("LEASE-10", "LEASE-3"))
    yield _market("giving_up_ends_other_leases", [
        claim(T0, W1), claim(T0, W2), result(T0 + 1, 1), checked(T0 + 2, 1, False, "bad_field"),
        claim(T0 + 3, W3), result(T0 + 4, 2, W2), result(T0 + 4, 3, W3),
        checked(T0 + 5, 2, False, "bad_field"), claim(T0 + 6, W4),
        checked(T0 + 7, 3, False, "bad_field"), hb(T0 + 8, 4, W4)],
        "redundancy 2: the third agreeing rejection fails the job while lease 4 is live; "
        "lease 4 ends expired with bad_state and its heartbeat is refused", ("LEASE-8",),
        s=job(created=T0, deadline=T0 + 600_000, lease_s=10, redundancy=2))
    budget = LEASE_BUDGET_PERIODS * 10_000
    yield _market("squatter_loses_its_lease", [
        claim(T0), *[hb(T0 + i * 3_000, 1) for i in range(1, budget // 3_000 + 2)],
        tick(T0 + budget), tick(T0 + budget + 1), hb(T0 + budget + 2, 1),
        claim(T0 + budget + 3, W2)],
        "heartbeats renew a lease only up to LEASE_BUDGET_PERIODS lease periods after its "
        "grant: a leaseholder that never delivers loses it then", ("LEASE-11", "LEASE-9"))
    yield _market("verification_has_a_deadline", [
        claim(T0), result(T0 + 1_000, 1), result(T0 + 2_000, 1), result(T0 + 2_001, 1,
                                                                         output=OUT2),
        tick(T0 + 1_000 + VERIFY_TIMEOUT_MS - 1), tick(T0 + 1_000 + VERIFY_TIMEOUT_MS),
        checked(T0 + 1_000 + VERIFY_TIMEOUT_MS + 1, 1)],
        "a resent result awaits the verdict of the first, another output is busy; a "
        "verification not done by its deadline rejects the lease as truncated, and a late "
        "check changes nothing", ("LEASE-7", "LEASE-12"))
    yield _market("restart_resumes_leases_and_verification", [
        claim(T0), claim(T0 + 1, W2), result(T0 + 2, 2, W2), {"op": "restart", "at_ms":
                                                              T0 + 5_000},
        hb(T0 + 14_000, 1), checked(T0 + 14_001, 2)],
        "a requester restarted while lease 1 is active and lease 2 verifying keeps lease 1 "
        "live for another period and checks lease 2's output again with a new deadline",
        ("XCH-9", "XCH-10", "LEASE-12"),
        s=job(created=T0, deadline=T0 + 600_000, lease_s=10, redundancy=2))
    yield _market("publication_and_providing", [
        tick(T0 + 1, T0 + 1), tick(T0 + 2_000, T0 + 2_000), tick(T0 + 2_001, T0 + 2_001),
        tick(T0 + 60_000, T0 + 60_000), claim(T0 + 60_001), tick(T0 + 120_000, T0 + 120_000)],
        "a job no offer placed is put in the DHT after DHT_PUBLISH_DELAY_MS, once; its "
        "discovery key is provided in each bucket while it needs workers, and no longer "
        "once leased", ("DHT-7", "DHT-9"))
    hour = 3_600_000
    yield _market("wall_clock_step", [
        claim(T0), tick(T0 + 5_000, T0 + 5_000 + hour), hb(T0 + 6_000, 1),
        tick(T0 + 12_000, T0 + 12_000 + hour), tick(T0 + 16_001, T0 + 16_001 - hour)],
        "the wall clock steps an hour ahead and then back: leases run on the local "
        "timeline and expire only by it (only discovery buckets follow the wall clock)",
        ("LEASE-13", "LEASE-9"))
    table = [{"key": W1, **FIT}, {"key": W2, **SMALL}, {"key": W3, **FIT,
                                                          "prices": {"matmul": 10**9}}]
    more = [*table, {"key": W4, **FIT}]
    yield _market("offers", [
        {"op": "offers", "at_ms": T0, "table": table},
        {"op": "offers", "at_ms": T0 + 1, "table": more},
        {"op": "offer_done", "at_ms": T0 + 2, "worker": W1, "busy": False},
        {"op": "offers", "at_ms": T0 + 3, "table": more},
        {"op": "offer_done", "at_ms": T0 + 4, "worker": W4, "busy": True},
        {"op": "offers", "at_ms": T0 + 5, "table": table},
        {"op": "offers", "at_ms": T0 + 5_000, "table": table},
        {"op": "offer_done", "at_ms": T0 + 5_001, "worker": W1, "busy": False},
        claim(T0 + 5_002, W1), {"op": "offers", "at_ms": T0 + 10_003, "table": more}],
        "candidates meet the job's kind, requirements and price; one offer is in flight per "
        "job; a worker is not offered the same job again within OFFER_BACKOFF_MS unless it "
        "answered busy (then any job after OFFER_BUSY_BACKOFF_MS); once a lease is live its "
        "holder is no candidate", ("OFR-1", "OFR-2", "OFR-3"))
    yield _market("query_lists_open_jobs", [
        {"op": "query", "at_ms": T0, "kinds": ["matmul"], "class": "cpu"},
        {"op": "query", "at_ms": T0, "kinds": ["wasm"], "class": "gpu"},
        claim(T0 + 1), {"op": "query", "at_ms": T0 + 2, "kinds": ["matmul"], "class": "gpu"}],
        "a query lists jobs that need workers, of the asked kinds and class", ("XCH-8",))


# -- the worker -----------------------------------------------------------------------------

PROFILE = {"kinds": ["matmul"], "prices": {"matmul": 40}, "concurrency": 1, "cores": 8,
           "mem": 32 << 30}
WK = BOB.public_key.hex()


def _work(name: str, events: list[dict[str, Any]], desc: str, rules: tuple[str, ...],
          s: JobSpec = SM, profile: dict[str, Any] = PROFILE) -> Case:
    return Case(name, Inputs({"spec.cbor": s.seal(ALICE), "events.json": events},
                             {"net": NET, "key": WK, "profile": profile, "wall_time_s": 300}),
                valid(), desc, rules)


def ev(op: str, at: int, **kw: Any) -> dict[str, Any]:
    return {"op": op, "at_ms": at, **kw}


def lease(at: int, expires: int, **kw: Any) -> dict[str, Any]:
    return ev("lease", at, lease=1, expires=expires, price=40, **kw)


def work() -> Iterator[Case]:
    yield _work("happy_path", [
        ev("offer", T0), ev("offer", T0 + 1), lease(T0 + 2, T0 + 10_002),
        ev("inputs", T0 + 100, ok=True), ev("tick", T0 + 3_335),
        ev("renewal", T0 + 3_400, lease=1, expires=T0 + 13_400, price=40),
        ev("executed", T0 + 4_000, output=OUT1, size=100),
        ev("result_answer", T0 + 4_500, accepted=True), ev("offer", T0 + 4_501)],
        "offer, claim (a second offer finds the worker busy), lease, fetch, execute within "
        "the lease's budget, heartbeat, result, verdict; the slot is free again",
        ("WRK-2", "WRK-4", "WRK-6", "WRK-7", "LEASE-11"))
    yield _work("leases_not_for_us", [
        ev("offer", T0), lease(T0 + 1, T0 + 10_001, signer=CAROL.public_key.hex()),
        ev("offer", T0 + 2), lease(T0 + 3, T0 + 10_003, worker=W2), ev("offer", T0 + 4),
        lease(T0 + 5, T0 + 10_005, job=OUT1), ev("offer", T0 + 6),
        lease(T0 + 7, T0 + 10_007), ev("renewal", T0 + 8, lease=2, expires=T0 + 20_000,
                                       price=40)],
        "a lease signed by another key, for another worker or job, is refused and frees the "
        "slot; a renewal naming another lease number counts as no answer",
        ("WRK-2", "WRK-4", "WRK-6"))
    yield _work("lease_lost", [
        ev("offer", T0), lease(T0 + 1, T0 + 10_001), ev("inputs", T0 + 2, ok=True),
        ev("heartbeat_refused", T0 + 3_000)],
        "a refused heartbeat means the lease is lost: the execution is stopped and the slot "
        "freed", ("WRK-6", "WRK-2"))
    yield _work("lease_runs_out_unanswered", [
        ev("offer", T0), lease(T0 + 1, T0 + 10_001), ev("heartbeat_failed", T0 + 3_334),
        ev("tick", T0 + 10_001 + LEASE_GRACE_MS), ev("tick", T0 + 10_002 + LEASE_GRACE_MS)],
        "with no answer to its heartbeats a worker stops LEASE_GRACE_MS after its lease ran "
        "out", ("WRK-6",))
    yield _work("execution_fails", [
        ev("offer", T0), lease(T0 + 1, T0 + 10_001), ev("inputs", T0 + 2, ok=True),
        ev("executed", T0 + 3, reason="exec_failed: trap")],
        "a failed execution gets no result; the worker stops", ("WRK-8",))
    yield _work("result_sent_again", [
        ev("offer", T0), lease(T0 + 1, T0 + 10_001), ev("inputs", T0 + 2, ok=True),
        ev("executed", T0 + 3, output=OUT1, size=9), ev("result_answer", T0 + 50),
        ev("tick", T0 + 2_050), ev("result_answer", T0 + 2_100, refused="busy"),
        ev("heartbeat_refused", T0 + 2_200), ev("tick", T0 + 2_200),
        ev("result_answer", T0 + 2_300, accepted=False)],
        "a result whose exchange failed is sent again; busy is not an answer; a heartbeat "
        "refused while submitting asks for the verdict at once", ("WRK-7",))
    yield _work("no_verdict_in_time", [
        ev("offer", T0), lease(T0 + 1, T0 + 10_001), ev("inputs", T0 + 2, ok=True),
        ev("executed", T0 + 3, output=OUT1, size=9),
        ev("tick", T0 + 3 + VERDICT_WAIT_MS)],
        "a worker waits for its verdict VERDICT_WAIT_MS, longer than the requester may take "
        "to judge (LEASE-12), then gives up", ("WRK-7", "LEASE-12"))
    yield _work("restart_resumes", [
        ev("offer", T0), lease(T0 + 1, T0 + 10_001), ev("inputs", T0 + 2, ok=True),
        ev("restart", T0 + 5_000), ev("offer", T0 + 5_001),
        ev("restart", T0 + 1 + LEASE_BUDGET_PERIODS * 10_000)],
        "after a restart a worker resumes from the input fetch on and asks the requester at "
        "once; after its lease's budget it gives the job up", ("WRK-9",))
    alice, carol = ALICE.public_key.hex(), CAROL.public_key.hex()
    yield _work("listings", [
        ev("listed", T0, provider=alice, list_signer=alice),
        ev("listed", T0, provider=alice, list_signer=carol),
        ev("listed", T0, provider=carol, list_signer=carol)],
        "a listed job counts only from a list signed by its provider, who must be the "
        "job's requester", ("WRK-5",))
    yield _work("declines", [
        ev("offer", T0 + 600_000)],
        "a job past its deadline is declined", ("WRK-1",))


# -- VER-1 and XCH-2 .. XCH-4 ----------------------------------------------------------------


def fetch() -> Iterator[Case]:
    def case(name: str, failures: list[Reason], expected: Any, desc: str) -> Case:
        return Case(name, Inputs({}, {"failures": [r.value for r in failures]}), expected,
                    desc, ("VER-1",))

    yield case("worker_fault_at_once", [Reason.HASH_MISMATCH], reject(Reason.HASH_MISMATCH),
               "content that does not hash to the output's id rejects at once")
    yield case("transport_three_times", [Reason.TRUNCATED, Reason.NOT_FOUND, Reason.TRUNCATED],
               reject(Reason.TRUNCATED), "other failures are retried, three fetches in all")
    yield case("busy_is_waited_for", [Reason.BUSY] * 5 + [Reason.TRUNCATED, Reason.TOO_LARGE],
               reject(Reason.TOO_LARGE), "a busy blob server is waited for, never counted")
    yield case("retry_then_success", [Reason.NOT_FOUND, Reason.BUSY], valid(),
               "after a retried failure and a busy answer the fetch may still succeed")


def dispatch() -> Iterator[Case]:
    claim_msg = JobClaim(net=NET, job=cid_of(b"j"), price=1, ts=T0)
    offer = JobOffer(net=NET, spec=SM.seal(ALICE), ts=T0)
    hbm = JobHeartbeat(net=NET, job=cid_of(b"j"), lease=1, progress=0, ts=T0)
    lease_msg = JobLease(net=NET, job=cid_of(b"j"), worker=BOB.public_key, lease=1,
                         expires=T0, price=1)
    bob = BOB.public_key.hex()

    def case(name: str, data: bytes, remote: str, expected: Any, desc: str,
             rules: tuple[str, ...]) -> Case:
        return Case(name, Inputs({"first.cbor": data}, {"net": NET, "remote": remote}),
                    expected, desc, rules)

    yield case("garbage", b"\x00", bob, reject(Reason.BAD_ENVELOPE),
               "a first message that does not open is dropped with no answer", ("XCH-2",))
    yield case("signed_by_another", claim_msg.seal(CAROL), bob,
               reject(Reason.SIGNER_MISMATCH),
               "a first message not signed by the stream's peer is dropped", ("XCH-3",))
    yield case("claim_to_requester", claim_msg.seal(BOB), bob, valid(),
               "claims, heartbeats, results, queries and gets go to the requester",
               ("XCH-4",))
    yield case("heartbeat_to_requester", hbm.seal(BOB), bob, valid(),
               "a heartbeat goes to the requester", ("XCH-4",))
    yield case("offer_to_worker", offer.seal(ALICE), ALICE.public_key.hex(), valid(),
               "an offer goes to the worker", ("XCH-4",))
    yield case("lease_is_no_first_message", lease_msg.seal(BOB), bob, valid(),
               "a lease, list, verdict or refusal as first message is refused unknown_type",
               ("XCH-4",))


HANDLERS: dict[str, Callable[[], Iterator[Case]]] = {
    "market": market, "work": work, "fetch": fetch, "dispatch": dispatch,
}
