"""The worker as a machine (spec 04 §5.2), sans-IO.

Each job the worker holds is a :class:`Work` whose state moves only along ``TRANSITIONS``
(printed in spec 04 §5.2 and checked against this table by the tests). Events — an offer, a
lease or refusal, inputs fetched, an execution finished, a heartbeat or result answered,
time passing — come in with ``now`` (ms on the node's local, monotonic timeline); effects
come out: persist, fetch inputs, execute, stop an execution, send a heartbeat or a result.
The shell fills in the wall-clock ``ts`` of what it sends and converts wall-clock lease
expiries to the local timeline before it hands a lease in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from p2pnode.jobs.market import LEASE_BUDGET_PERIODS, VERIFY_TIMEOUT_MS
from p2pnode.jobs.matching import Capacity, unmet
from p2pnode.jobs.messages import JobLease
from p2pnode.jobs.model import SignedJob, challenge_target
from p2pnode.wire.reasons import Reason

# XCH-4: how long a worker waits for its verdict: as long as the requester may take to
# judge (LEASE-12), and one exchange more.
VERDICT_WAIT_MS = VERIFY_TIMEOUT_MS + 10_000
# WRK-7: a result whose exchange failed before its verdict is sent again after this.
SUBMIT_RETRY_MS = 2_000
# WRK-6: with no renewal, the worker stops this long after its lease ran out (the two
# clocks differ a little; the requester's view decides, LEASE-9).
LEASE_GRACE_MS = 2_000
# WRK-5: a listed job the worker did not take is looked at again after this.
SEEN_FOR_MS = 10_000
# WRK-5: at most this many listed jobs are remembered as looked at; at the cap the worker
# looks at no new listed job until the oldest entries expire (offers still reach it).
MAX_SEEN = 4096
# Local policy (spec 04 §8): finished work is forgotten from memory this long after it
# ended (the node's `jobs_retention_s`; its row stays in storage for as long), and at most
# MAX_FINISHED_WORK finished works are held, the one that ended first going first. Open
# work is bounded by the concurrency (WRK-2) and never forgotten.
WORK_RETENTION_MS = 86_400_000
MAX_FINISHED_WORK = 256


class WorkState(StrEnum):
    CLAIMING = "claiming"  # a claim is out, no lease yet
    FETCHING = "fetching"  # leased: fetching the inputs
    RUNNING = "running"  # executing
    SUBMITTING = "submitting"  # the result is out, waiting for its verdict
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    REFUSED = "refused"  # the claim or the result was refused
    LOST = "lost"  # the lease was lost: refused heartbeat, or it ran out
    EXEC_FAILED = "exec_failed"  # the execution failed (WRK-8)
    FAILED = "failed"  # inputs could not be had, or no verdict came in time


class WorkEv(StrEnum):
    LEASED = "leased"
    CLAIM_REFUSED = "claim_refused"
    INPUTS_FETCHED = "inputs_fetched"
    FETCH_FAILED = "fetch_failed"
    EXECUTED = "executed"
    EXEC_FAILED = "exec_failed"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RESULT_REFUSED = "result_refused"
    SUBMIT_FAILED = "submit_failed"
    NO_VERDICT = "no_verdict"
    LEASE_LOST = "lease_lost"
    RESTARTED = "restarted"


TRANSITIONS: dict[tuple[WorkState, WorkEv], WorkState] = {
    (WorkState.CLAIMING, WorkEv.LEASED): WorkState.FETCHING,
    (WorkState.CLAIMING, WorkEv.CLAIM_REFUSED): WorkState.REFUSED,
    (WorkState.FETCHING, WorkEv.INPUTS_FETCHED): WorkState.RUNNING,
    (WorkState.FETCHING, WorkEv.FETCH_FAILED): WorkState.FAILED,
    (WorkState.FETCHING, WorkEv.LEASE_LOST): WorkState.LOST,
    (WorkState.FETCHING, WorkEv.RESTARTED): WorkState.FETCHING,
    (WorkState.RUNNING, WorkEv.EXECUTED): WorkState.SUBMITTING,
    (WorkState.RUNNING, WorkEv.EXEC_FAILED): WorkState.EXEC_FAILED,
    (WorkState.RUNNING, WorkEv.LEASE_LOST): WorkState.LOST,
    (WorkState.RUNNING, WorkEv.RESTARTED): WorkState.FETCHING,
    (WorkState.SUBMITTING, WorkEv.ACCEPTED): WorkState.ACCEPTED,
    (WorkState.SUBMITTING, WorkEv.REJECTED): WorkState.REJECTED,
    (WorkState.SUBMITTING, WorkEv.RESULT_REFUSED): WorkState.REFUSED,
    (WorkState.SUBMITTING, WorkEv.SUBMIT_FAILED): WorkState.SUBMITTING,
    (WorkState.SUBMITTING, WorkEv.NO_VERDICT): WorkState.FAILED,
    (WorkState.SUBMITTING, WorkEv.LEASE_LOST): WorkState.LOST,
    (WorkState.SUBMITTING, WorkEv.RESTARTED): WorkState.FETCHING,
}
OPEN = frozenset({WorkState.CLAIMING, WorkState.FETCHING, WorkState.RUNNING,
                  WorkState.SUBMITTING})
PROGRESS = {WorkState.FETCHING: 0, WorkState.RUNNING: 500, WorkState.SUBMITTING: 1000}


@dataclass
class Work:
    """A job this worker holds (or claims)."""

    job: SignedJob
    state: WorkState = WorkState.CLAIMING
    lease: int = 0
    price: int = 0
    expires: int = 0  # local ms, as renewed
    budget_end: int = 0  # local ms: no renewal beyond (LEASE-11)
    next_heartbeat: int | None = None
    retry_at: int | None = None  # SUBMITTING: send the result again
    verdict_by: int = 0
    output: bytes | None = None
    size: int = 0
    meta: dict[str, int | str] = field(default_factory=dict)
    proof: dict[str, Any] = field(default_factory=dict)  # the commitment (PRF-1)
    history: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def id(self) -> bytes:
        return self.job.id


# -- effects --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Persist:
    job: bytes


@dataclass(frozen=True, slots=True)
class FetchInputs:
    job: bytes


@dataclass(frozen=True, slots=True)
class Execute:
    job: bytes
    wall_time_s: float


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop whatever runs for the job (a fetch, an execution) and free its slot."""

    job: bytes


@dataclass(frozen=True, slots=True)
class SendHeartbeat:
    job: bytes
    lease: int
    progress: int


@dataclass(frozen=True, slots=True)
class SendResult:
    job: bytes
    lease: int
    output: bytes
    size: int
    meta: dict[str, Any]
    proof: dict[str, Any] = field(default_factory=dict)


Effect = Persist | FetchInputs | Execute | Stop | SendHeartbeat | SendResult


class Worker:
    """Which jobs this worker takes (WRK-1, WRK-2) and the life of each (WRK-4..WRK-9)."""

    def __init__(self, net: str, key: bytes, capacity: Capacity, concurrency: int, *,
                 wall_time_s: float = 300.0, retention_ms: int = WORK_RETENTION_MS,
                 max_finished: int = MAX_FINISHED_WORK) -> None:
        self.net = net
        self.key = key
        self.capacity = capacity
        self.concurrency = concurrency
        self.wall_time_s = wall_time_s
        self.retention_ms = retention_ms
        self.max_finished = max_finished
        self.work: dict[bytes, Work] = {}
        self._seen: dict[bytes, int] = {}
        self.forgotten = {"retention": 0, "cap": 0}  # finished work let go (for metrics)
        self.seen_full = 0  # listed jobs not looked at because MAX_SEEN was reached

    # -- taking jobs ----------------------------------------------------------------------

    @property
    def active(self) -> int:
        return sum(1 for w in self.work.values() if w.state in OPEN)

    @property
    def free(self) -> int:
        return self.concurrency - self.active

    def consider(self, sj: SignedJob, now: int, deadline: int,
                 too_new: bool = False) -> Reason | None:
        """WRK-1, in order; None if the worker claims the job. ``deadline`` is the spec's
        deadline on the local timeline; ``too_new`` whether its ``created`` is beyond the
        clock skew (JOB-11, judged on the wall clock by the shell)."""
        spec = sj.spec
        if spec.net != self.net:
            return Reason.WRONG_NETWORK
        why = unmet(self.capacity, spec)
        if why is not None:
            return why
        target = challenge_target(spec)
        if target is not None and target != self.key:  # a challenge for another worker
            return Reason.REQUIREMENTS_UNMET
        if now >= deadline:
            return Reason.DEADLINE_PASSED
        if too_new:
            return Reason.CLOCK_SKEW
        held = self.work.get(sj.id)
        if held is not None and held.state in OPEN:
            return Reason.BAD_STATE
        if self.active >= self.concurrency:
            return Reason.BUSY
        return None

    def take(self, sj: SignedJob, now: int, deadline: int,
             too_new: bool = False) -> tuple[int | None, Reason | None]:
        """Consider the job and, if it fits, reserve its slot (WRK-2): (price, None) to
        claim at, or (None, reason)."""
        why = self.consider(sj, now, deadline, too_new)
        if why is not None:
            return None, why
        w = Work(job=sj)
        w.history.append((now, WorkState.CLAIMING.value, ""))
        self.work[sj.id] = w
        return self.capacity.price_for(sj.spec.kind), None

    def lease_problem(self, sj: SignedJob, signer: bytes, lease: JobLease,
                      number: int | None = None) -> Reason | None:
        """WRK-4, WRK-6: a lease must be the requester's, for this job, worker and lease."""
        if signer != sj.requester:
            return Reason.SIGNER_MISMATCH
        if lease.job != sj.id or lease.worker != self.key:
            return Reason.BAD_FIELD
        if number is not None and lease.lease != number:
            return Reason.BAD_FIELD
        return None

    def _step(self, w: Work, ev: WorkEv, now: int, detail: str = "") -> list[Effect]:
        nxt = TRANSITIONS.get((w.state, ev))
        if nxt is None:
            raise AssertionError(f"no transition from {w.state} on {ev}")
        w.state = nxt
        w.history.append((now, ev.value, detail))
        out: list[Effect] = [Persist(w.id)]
        if nxt not in OPEN:
            w.next_heartbeat = w.retry_at = None
            out.append(Stop(w.id))
        return out

    def on_claim_answer(self, job_id: bytes, lease: JobLease | None, expires: int,
                        now: int) -> list[Effect]:
        """The requester answered our claim with ``lease`` (already checked with
        ``lease_problem``; ``expires`` on the local timeline), or refused or failed."""
        w = self.work.get(job_id)
        if w is None or w.state is not WorkState.CLAIMING:
            return []
        if lease is None:
            del self.work[job_id]  # nothing to remember: the slot is free again
            return []
        w.lease, w.price, w.expires = lease.lease, lease.price, expires
        w.budget_end = now + LEASE_BUDGET_PERIODS * w.job.spec.lease_s * 1000
        out = self._step(w, WorkEv.LEASED, now, f"lease {lease.lease}")
        return out + self._start(w, now)

    def _start(self, w: Work, now: int) -> list[Effect]:
        w.next_heartbeat = now + self.heartbeat_ms(w)
        return [FetchInputs(w.id)]

    def heartbeat_ms(self, w: Work) -> int:
        """WRK-6: every max(0.5, lease_s / 3) seconds."""
        return max(500, w.job.spec.lease_s * 1000 // 3)

    # -- the work itself ------------------------------------------------------------------

    def _open(self, job_id: bytes, state: WorkState) -> Work | None:
        w = self.work.get(job_id)
        return w if w is not None and w.state is state else None

    def on_inputs(self, job_id: bytes, ok: bool, detail: str, now: int) -> list[Effect]:
        w = self._open(job_id, WorkState.FETCHING)
        if w is None:
            return []
        if not ok:
            return self._step(w, WorkEv.FETCH_FAILED, now, detail)
        out = self._step(w, WorkEv.INPUTS_FETCHED, now)
        # An execution may not outlive the lease's budget (LEASE-11).
        wall = min(self.wall_time_s, max(0.1, (w.budget_end - now) / 1000))
        return [*out, Execute(w.id, wall)]

    def on_executed(self, job_id: bytes, output: bytes | None, size: int,
                    meta: dict[str, int | str], reason: str, now: int,
                    proof: dict[str, Any] | None = None) -> list[Effect]:
        w = self._open(job_id, WorkState.RUNNING)
        if w is None:
            return []
        if output is None:
            return self._step(w, WorkEv.EXEC_FAILED, now, reason)
        w.output, w.size, w.meta, w.proof = output, size, meta, dict(proof or {})
        w.verdict_by = now + VERDICT_WAIT_MS
        w.retry_at = None
        out = self._step(w, WorkEv.EXECUTED, now, output.hex()[:16])
        return [*out, self._result(w)]

    def _result(self, w: Work) -> SendResult:
        assert w.output is not None
        return SendResult(w.id, w.lease, w.output, w.size, dict(list(w.meta.items())[:16]),
                          w.proof)

    def on_heartbeat_answer(self, job_id: bytes, renewed: int | None, refused: bool,
                            now: int) -> list[Effect]:
        """A heartbeat got a checked renewal (``renewed``: local expiry), a refusal, or
        nothing (both None/False: the exchange failed, which counts as no answer)."""
        w = self.work.get(job_id)
        if w is None or w.state not in OPEN or w.state is WorkState.CLAIMING:
            return []
        if renewed is not None:
            w.expires = max(w.expires, renewed)
            return []
        if not refused:
            return []
        if w.state is WorkState.SUBMITTING:
            # The lease was judged or lost at the requester: the result's own answer says
            # which, so ask again now (LEASE-7 answers a repeated result).
            w.retry_at = now
            return []
        return self._step(w, WorkEv.LEASE_LOST, now, "heartbeat refused")

    def on_result_answer(self, job_id: bytes, accepted: bool | None, refused: str | None,
                         now: int) -> list[Effect]:
        """The result's exchange ended: a verdict (``accepted``), a refusal (its reason),
        or neither (it failed: send again until ``verdict_by``)."""
        w = self._open(job_id, WorkState.SUBMITTING)
        if w is None:
            return []
        if accepted is not None:
            return self._step(w, WorkEv.ACCEPTED if accepted else WorkEv.REJECTED, now)
        if refused is not None and refused != Reason.BUSY.value:
            return self._step(w, WorkEv.RESULT_REFUSED, now, refused)
        if now >= w.verdict_by:
            return self._step(w, WorkEv.NO_VERDICT, now)
        w.retry_at = now + SUBMIT_RETRY_MS
        w.history.append((now, WorkEv.SUBMIT_FAILED.value, refused or ""))
        return []

    # -- time -----------------------------------------------------------------------------

    def on_timer(self, now: int) -> list[Effect]:
        out: list[Effect] = []
        for w in list(self.work.values()):
            if w.state not in OPEN or w.state is WorkState.CLAIMING:
                continue
            if w.state is not WorkState.SUBMITTING and now > w.expires + LEASE_GRACE_MS:
                out += self._step(w, WorkEv.LEASE_LOST, now, "lease ran out")
                continue
            if w.state is WorkState.SUBMITTING and now >= w.verdict_by:
                out += self._step(w, WorkEv.NO_VERDICT, now)
                continue
            if w.next_heartbeat is not None and now >= w.next_heartbeat:
                w.next_heartbeat = now + self.heartbeat_ms(w)
                out.append(SendHeartbeat(w.id, w.lease, PROGRESS.get(w.state, 0)))
            if w.retry_at is not None and now >= w.retry_at:
                w.retry_at = None
                out.append(self._result(w))
        self._seen = {j: t for j, t in self._seen.items() if t > now}
        self._forget_finished(now)
        return out

    @staticmethod
    def _ended(w: Work) -> int:
        return w.history[-1][0] if w.history else 0

    def _forget_finished(self, now: int) -> None:
        done = sorted(((self._ended(w), j) for j, w in self.work.items()
                       if w.state not in OPEN))
        for n, (ended, j) in enumerate(done):
            if ended + self.retention_ms <= now:
                self.forgotten["retention"] += 1
            elif len(done) - n > self.max_finished:
                self.forgotten["cap"] += 1
            else:
                break
            del self.work[j]

    @property
    def seen(self) -> int:
        """Listed jobs remembered as looked at (at most ``MAX_SEEN``)."""
        return len(self._seen)

    @property
    def finished(self) -> int:
        return sum(1 for w in self.work.values() if w.state not in OPEN)

    def next_deadline(self) -> int | None:
        """When ``on_timer`` next has work: a heartbeat, a result to send again, a lease or
        verdict running out, finished work to forget, listed jobs to look at again once
        ``MAX_SEEN`` was reached."""
        times: list[int] = [self._ended(w) + self.retention_ms for w in self.work.values()
                            if w.state not in OPEN]
        if len(self._seen) >= MAX_SEEN:
            times.append(min(self._seen.values()))
        for w in self.work.values():
            if w.state not in OPEN or w.state is WorkState.CLAIMING:
                continue
            times += [t for t in (w.next_heartbeat, w.retry_at) if t is not None]
            times.append(w.verdict_by if w.state is WorkState.SUBMITTING
                         else w.expires + LEASE_GRACE_MS + 1)
        return min(times, default=None)

    # -- restart (WRK-9) ------------------------------------------------------------------

    def resume(self, w: Work, now: int) -> list[Effect]:
        """Work loaded from storage. It resumes from the input fetch on while its lease's
        budget has not run out and a slot is free; else it is given up."""
        if w.state not in OPEN or w.state is WorkState.CLAIMING:
            return []
        if now >= w.budget_end or self.active >= self.concurrency:
            w.state = WorkState.LOST
            w.history.append((now, WorkEv.LEASE_LOST.value, "restarted: lease over"))
            self.work[w.id] = w
            return [Persist(w.id)]
        self.work[w.id] = w
        w.expires = max(w.expires, now)  # the first heartbeat tells (WRK-9)
        out = self._step(w, WorkEv.RESTARTED, now, f"after a restart in state {w.state}")
        w.next_heartbeat = now  # ask the requester at once
        return [*out, FetchInputs(w.id)]

    # -- discovery (WRK-5) ----------------------------------------------------------------

    def wants(self, job_id: bytes, now: int) -> bool:
        """A listed job worth a look: not held, not looked at lately."""
        if job_id in self.work and self.work[job_id].state in OPEN:
            return False
        if self._seen.get(job_id, 0) > now:
            return False
        if len(self._seen) >= MAX_SEEN:
            self.seen_full += 1
            return False
        self._seen[job_id] = now + SEEN_FOR_MS
        return True

    @staticmethod
    def listing_problem(sj: SignedJob, provider: bytes, list_signer: bytes) -> Reason | None:
        """WRK-5: a ``job.list`` counts only when signed by the provider it came from, and a
        listed job only when that provider is its requester."""
        if list_signer != provider or sj.requester != provider:
            return Reason.SIGNER_MISMATCH
        return None
