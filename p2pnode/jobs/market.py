"""One job as its requester sees it: its leases and its state (spec/04-jobs.md §4), sans-IO.

``RequesterJob`` takes decoded events and ``now`` (ms on the node's monotonic timeline,
see ``p2pnode.jobs.requester``) and returns decisions. The job state is a table
(``TRANSITIONS``) of (state, event) -> next state, so the spec can print it and the tests
can walk every edge. ``p2pnode.jobs.requester.Requester`` holds many jobs and adds offers,
publication and timers; the shell signs, sends, persists and fetches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from p2pnode.identity import peer_id_str
from p2pnode.jobs.model import JobSpec
from p2pnode.wire.reasons import Reason


class JobState(StrEnum):
    PUBLISHED = "published"  # open: waiting for workers
    LEASED = "leased"  # at least one live lease, no heartbeat yet
    RUNNING = "running"  # a leaseholder reported progress
    RESULT = "result"  # a result is being verified
    COMPLETED = "completed"  # enough verified results (terminal)
    FAILED = "failed"  # deadline passed or too many rejected results (terminal)


class Ev(StrEnum):
    LEASED = "leased"
    HEARTBEAT = "heartbeat"
    RESULT = "result"
    VERIFIED = "verified"
    VERIFIED_ALL = "verified_all"
    REJECTED = "rejected"
    LEASE_EXPIRED = "lease_expired"
    DEADLINE = "deadline"
    GAVE_UP = "gave_up"


# (state, event) -> next state. "Leases left" decides between the two targets of some
# events; the machine picks the first target whose guard holds (see RequesterJob._step).
TRANSITIONS: dict[tuple[JobState, Ev], JobState] = {
    (JobState.PUBLISHED, Ev.LEASED): JobState.LEASED,
    (JobState.LEASED, Ev.LEASED): JobState.LEASED,
    (JobState.RUNNING, Ev.LEASED): JobState.RUNNING,
    (JobState.RESULT, Ev.LEASED): JobState.RESULT,
    (JobState.LEASED, Ev.HEARTBEAT): JobState.RUNNING,
    (JobState.RUNNING, Ev.HEARTBEAT): JobState.RUNNING,
    (JobState.RESULT, Ev.HEARTBEAT): JobState.RESULT,
    (JobState.LEASED, Ev.RESULT): JobState.RESULT,
    (JobState.RUNNING, Ev.RESULT): JobState.RESULT,
    (JobState.RESULT, Ev.RESULT): JobState.RESULT,
    (JobState.RESULT, Ev.VERIFIED): JobState.PUBLISHED,  # redundancy > 1: more results to come
    (JobState.RESULT, Ev.VERIFIED_ALL): JobState.COMPLETED,
    (JobState.RESULT, Ev.REJECTED): JobState.PUBLISHED,  # reassigned
    (JobState.LEASED, Ev.LEASE_EXPIRED): JobState.PUBLISHED,  # reassigned
    (JobState.RUNNING, Ev.LEASE_EXPIRED): JobState.PUBLISHED,
    (JobState.RESULT, Ev.LEASE_EXPIRED): JobState.PUBLISHED,
    (JobState.PUBLISHED, Ev.DEADLINE): JobState.FAILED,
    (JobState.LEASED, Ev.DEADLINE): JobState.FAILED,
    (JobState.RUNNING, Ev.DEADLINE): JobState.FAILED,
    (JobState.RESULT, Ev.DEADLINE): JobState.FAILED,
    (JobState.RESULT, Ev.GAVE_UP): JobState.FAILED,
}
TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED})
# LEASE-8: this many distinct workers whose results with one output were fetched and failed
# the check make the job fail early: honest workers agree byte for byte (EXE-7), so their
# common output failing says the job is broken; a cheater only excludes itself.
MAX_REJECTED_RESULTS = 3
# Rejections that prove the output is not the job's (spec 06 PRF-5): they say nothing about
# the job, so they never count toward giving up (three keys of one cheater could).
PROVEN_WRONG = frozenset({Reason.WRONG_RESULT.value, Reason.BAD_PROOF.value})
# LEASE-10: leases a worker may lose without ever heartbeating and not be excluded.
UNCONFIRMED_FORGIVEN = 1
# LEASE-11: heartbeats renew a lease up to this many lease periods after it was granted.
LEASE_BUDGET_PERIODS = 4
# LEASE-12: the requester judges a result within this time of its arrival.
VERIFY_TIMEOUT_MS = 200_000


class LeaseState(StrEnum):
    ACTIVE = "active"
    VERIFYING = "verifying"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXPIRED = "expired"


_TIMES = ("granted", "expires", "budget_end", "verify_by")


@dataclass
class Lease:
    number: int
    worker: bytes  # Ed25519 public key
    price: int
    granted: int  # ms
    expires: int  # ms
    budget_end: int = 0  # ms: no renewal beyond (LEASE-11)
    state: LeaseState = LeaseState.ACTIVE
    heartbeats: int = 0
    progress: int = 0
    output: bytes | None = None
    reason: str = ""
    checked: bool = False  # a rejection after the output was fetched and judged
    verify_by: int = 0  # ms: the verdict is due (LEASE-12)
    compute_ms: int = 0  # as the worker reported it; informational, not verified
    commit: bytes = b""  # the output's row root the worker signed with it (PRF-1)

    def to_row(self, shift: int = 0) -> dict[str, Any]:
        row = {"number": self.number, "worker": self.worker.hex(), "price": self.price,
               "state": self.state.value, "heartbeats": self.heartbeats,
               "progress": self.progress, "reason": self.reason, "checked": self.checked,
               "output": self.output.hex() if self.output else None,
               "compute_ms": self.compute_ms, "commit": self.commit.hex()}
        row.update({k: getattr(self, k) + shift for k in _TIMES})
        return row

    @classmethod
    def from_row(cls, r: dict[str, Any], shift: int = 0) -> Lease:
        return cls(number=r["number"], worker=bytes.fromhex(r["worker"]), price=r["price"],
                   state=LeaseState(r["state"]), heartbeats=r["heartbeats"],
                   progress=r["progress"], reason=r["reason"], checked=bool(r["checked"]),
                   output=bytes.fromhex(r["output"]) if r["output"] else None,
                   compute_ms=int(r["compute_ms"]),
                   commit=bytes.fromhex(r.get("commit", "")),
                   **{k: int(r[k]) + shift for k in _TIMES})


@dataclass(frozen=True, slots=True)
class Grant:
    """Decision: give (or renew) this lease."""

    lease: Lease


@dataclass(frozen=True, slots=True)
class Refuse:
    """Decision: refuse the request with a reason code."""

    reason: Reason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Verify:
    """Decision: fetch ``output`` from the worker and check it by ``lease.verify_by``, then
    call ``on_verified``."""

    lease: Lease


@dataclass(frozen=True, slots=True)
class Await:
    """Decision: the same result is being verified; answer with its verdict when it comes
    (a worker that lost the stream of its first result sends it again, LEASE-7)."""

    lease: Lease


@dataclass(frozen=True, slots=True)
class Decided:
    """Decision: this result was already judged; answer with the recorded verdict."""

    lease: Lease


Decision = Grant | Refuse | Verify | Await | Decided


@dataclass
class RequesterJob:
    """One job as its requester tracks it (spec 04 §4).

    ``deadline`` is the spec's deadline on the requester's local timeline (the shell maps
    wall-clock values on and off the wire); every time in a job is on that timeline.
    """

    id: bytes
    spec: JobSpec
    raw: bytes
    deadline: int
    state: JobState = JobState.PUBLISHED
    leases: dict[int, Lease] = field(default_factory=dict)
    history: list[tuple[int, str, str]] = field(default_factory=list)
    reassigned: int = 0
    rejected: int = 0
    completed_at: int | None = None

    @classmethod
    def new(cls, job_id: bytes, spec: JobSpec, raw: bytes, now: int,
            deadline: int | None = None) -> RequesterJob:
        job = cls(id=job_id, spec=spec, raw=raw,
                  deadline=spec.deadline if deadline is None else deadline)
        job._log(now, "published")
        return job

    # -- helpers --------------------------------------------------------------------------

    def _log(self, now: int, what: str, detail: str = "") -> None:
        self.history.append((now, what, detail))

    def _step(self, ev: Ev, now: int, detail: str = "") -> None:
        nxt = TRANSITIONS.get((self.state, ev))
        if nxt is None:
            raise AssertionError(f"no transition from {self.state} on {ev}")
        self.state = nxt
        if nxt not in TERMINAL:
            self._settle()
        if ev in (Ev.LEASE_EXPIRED, Ev.REJECTED):
            self.reassigned += 1
            self._log(now, "reassigned", detail)

    def _settle(self) -> None:
        # With redundancy > 1 several leases live side by side; the job shows the most
        # advanced of them. The table above says which moves are legal at all.
        live = self.live_leases()
        if any(lease.state is LeaseState.VERIFYING for lease in live):
            self.state = JobState.RESULT
        elif any(lease.heartbeats for lease in live):
            self.state = JobState.RUNNING
        elif live:
            self.state = JobState.LEASED
        else:
            self.state = JobState.PUBLISHED

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def live_leases(self) -> list[Lease]:
        return [le for le in self.leases.values()
                if le.state in (LeaseState.ACTIVE, LeaseState.VERIFYING)]

    def accepted_leases(self) -> list[Lease]:
        return [le for le in self.leases.values() if le.state is LeaseState.ACCEPTED]

    def needs_workers(self) -> int:
        """How many more leases the job can take now."""
        if self.terminal:
            return 0
        return max(0, self.spec.redundancy - len(self.accepted_leases())
                   - len(self.live_leases()))

    def _lease_end(self, now: int, budget_end: int) -> int:
        return min(now + self.spec.lease_s * 1000, budget_end, self.deadline)

    def next_deadline(self) -> int | None:
        """The earliest time at which ``on_tick`` changes something (LEASE-9, LEASE-12)."""
        if self.terminal:
            return None
        times = [self.deadline]
        for le in self.leases.values():
            if le.state is LeaseState.ACTIVE:
                times.append(le.expires + 1)
            elif le.state is LeaseState.VERIFYING:
                times.append(le.verify_by)
        return min(times)

    # -- events -----------------------------------------------------------------------------

    def on_claim(self, worker: bytes, price: int, now: int,
                 qualified: bool = True) -> Grant | Refuse:
        """A worker claims the job (LEASE-3)."""
        if self.terminal:
            return Refuse(Reason.BAD_STATE, f"job is {self.state.value}")
        if now >= self.deadline:
            return Refuse(Reason.DEADLINE_PASSED)
        if price > self.spec.max_price:
            return Refuse(Reason.BAD_FIELD, f"price {price} > max_price {self.spec.max_price}")
        held = [le for le in self.leases.values() if le.worker == worker]
        for le in held:
            if le.state in (LeaseState.ACTIVE, LeaseState.VERIFYING):
                return Grant(le)  # a duplicate claim is idempotent
        if held and (worker in self.excluded_workers()
                     or any(le.state is LeaseState.ACCEPTED for le in held)):
            return Refuse(Reason.BAD_STATE, f"this worker's lease is {held[-1].state.value}")
        if not qualified:
            return Refuse(Reason.REQUIREMENTS_UNMET, "no live capability ad that meets the job")
        if self.needs_workers() == 0:
            return Refuse(Reason.BUSY, "fully leased")
        number = max(self.leases, default=0) + 1
        budget_end = min(now + LEASE_BUDGET_PERIODS * self.spec.lease_s * 1000, self.deadline)
        lease = Lease(number=number, worker=worker, price=price, granted=now,
                      expires=self._lease_end(now, budget_end), budget_end=budget_end)
        self.leases[number] = lease
        self._log(now, "claimed", f"by {peer_id_str(worker)}")
        self._step(Ev.LEASED, now)
        self._log(now, "leased", f"lease {number}")
        return Grant(lease)

    def _check_holder(self, worker: bytes, number: int, now: int) -> Lease | Refuse:
        lease = self.leases.get(number)
        if lease is None or lease.worker != worker:
            return Refuse(Reason.NOT_LEASEHOLDER, f"lease {number}")
        if lease.state is LeaseState.EXPIRED or (
            lease.state is LeaseState.ACTIVE and now > lease.expires
        ):
            return Refuse(Reason.LEASE_EXPIRED, f"lease {number}")
        return lease

    def on_heartbeat(self, worker: bytes, number: int, progress: int,
                     now: int) -> Grant | Refuse:
        """The leaseholder reports progress; the lease is renewed (LEASE-5, LEASE-6)."""
        if self.terminal:
            return Refuse(Reason.BAD_STATE, f"job is {self.state.value}")
        checked = self._check_holder(worker, number, now)
        if isinstance(checked, Refuse):
            return checked
        lease = checked
        if lease.state is LeaseState.VERIFYING:
            return Grant(lease)  # a heartbeat racing its own result: nothing to renew
        if lease.state is not LeaseState.ACTIVE:
            return Refuse(Reason.BAD_STATE, f"lease is {lease.state.value}")
        lease.expires = max(lease.expires, self._lease_end(now, lease.budget_end))
        lease.progress = min(progress, 1000)
        first = lease.heartbeats == 0
        lease.heartbeats += 1
        if first:
            self._step(Ev.HEARTBEAT, now)
            self._log(now, "running", f"lease {number}")
        return Grant(lease)

    def on_result(self, worker: bytes, number: int, output: bytes, now: int,
                  compute_ms: int = 0, commit: bytes = b"") -> Verify | Await | Decided | Refuse:
        """The leaseholder returns a result (LEASE-5, LEASE-7)."""
        lease = self.leases.get(number)
        if lease is None or lease.worker != worker:
            return Refuse(Reason.NOT_LEASEHOLDER, f"lease {number}")
        if lease.state in (LeaseState.ACCEPTED, LeaseState.REJECTED) and lease.output == output:
            return Decided(lease)  # a repeated result gets the same verdict
        if lease.state is LeaseState.VERIFYING and lease.output == output:
            return Await(lease)
        if now >= self.deadline:
            return Refuse(Reason.DEADLINE_PASSED)
        checked = self._check_holder(worker, number, now)
        if isinstance(checked, Refuse):
            return checked
        if lease.state is LeaseState.VERIFYING:
            return Refuse(Reason.BUSY, "another output of this lease is being verified")
        if lease.state is not LeaseState.ACTIVE or self.terminal:
            return Refuse(Reason.BAD_STATE, f"lease is {lease.state.value}")
        lease.state = LeaseState.VERIFYING
        lease.output = output
        lease.compute_ms = compute_ms
        lease.commit = commit
        lease.verify_by = now + VERIFY_TIMEOUT_MS
        self._step(Ev.RESULT, now)
        self._log(now, "result", f"lease {number} output {output.hex()[:16]}")
        return Verify(lease)

    def on_verified(self, number: int, ok: bool, reason: str, now: int,
                    checked: bool = True) -> Lease:
        """The shell finished checking a result (LEASE-8). ``checked`` says the output was
        fetched and judged; a rejection for its transfer is the worker's alone."""
        lease = self.leases[number]
        if lease.state is not LeaseState.VERIFYING:
            return lease
        if ok:
            lease.state = LeaseState.ACCEPTED
            done = len(self.accepted_leases()) >= self.spec.redundancy
            self._step(Ev.VERIFIED_ALL if done else Ev.VERIFIED, now)
            self._log(now, "verified", f"lease {number}")
            if done:
                self.completed_at = now
            return lease
        lease.state = LeaseState.REJECTED
        lease.reason = reason
        lease.checked = checked
        self.rejected += 1
        self._log(now, "rejected", f"lease {number}: {reason}")
        if self._broken():
            # The job fails now: end its other live leases, as the deadline does (LEASE-9).
            # A lease left verifying in a failed job got its verdict later and raised "no
            # transition from failed on verified"; this way the verdict is "not accepted"
            # with this reason, and an active holder's next heartbeat is refused.
            for le in self.live_leases():
                le.state = LeaseState.EXPIRED
                le.reason = Reason.BAD_STATE.value
            self._step(Ev.GAVE_UP, now)
            self._log(now, "failed", "distinct workers agree on an output that fails")
        else:
            self._step(Ev.REJECTED, now, f"after rejected lease {number}")
        return lease

    def _broken(self) -> bool:
        agree: dict[bytes, set[bytes]] = {}
        for le in self.leases.values():
            if le.state is LeaseState.REJECTED and le.checked and le.output is not None \
                    and le.reason not in PROVEN_WRONG:
                agree.setdefault(le.output, set()).add(le.worker)
        return any(len(w) >= MAX_REJECTED_RESULTS for w in agree.values())

    def on_tick(self, now: int) -> list[str]:
        """Time passes: expire leases, overdue verifications and the job itself (LEASE-9,
        LEASE-12). Returns what happened."""
        happened: list[str] = []
        if self.terminal:
            return happened
        if now >= self.deadline:
            for le in self.live_leases():
                le.state = LeaseState.EXPIRED
                le.reason = Reason.DEADLINE_PASSED.value
            self._step(Ev.DEADLINE, now)
            self._log(now, "expired", "deadline passed")
            return ["expired"]
        for le in list(self.leases.values()):
            if le.state is LeaseState.ACTIVE and now > le.expires:
                le.state = LeaseState.EXPIRED
                le.reason = Reason.LEASE_EXPIRED.value
                self._log(now, "lease_expired", f"lease {le.number}")
                self._step(Ev.LEASE_EXPIRED, now, f"after expired lease {le.number}")
                happened.append("reassigned")
            elif le.state is LeaseState.VERIFYING and now >= le.verify_by:
                # The output could not be had in time: a transfer failure (VER-1).
                self.on_verified(le.number, False, Reason.TRUNCATED.value, now, checked=False)
                happened.append("rejected" if not self.terminal else "gave_up")
                if self.terminal:
                    break
        return happened

    def resume(self, now: int) -> list[Lease]:
        """After a restart (XCH-10): active leases live at least one more period, as far as
        their budget allows (what the requester signed before it stopped can only have
        ended earlier), and verifications start again. Returns the leases to verify."""
        again = []
        for le in self.leases.values():
            if le.state is LeaseState.ACTIVE:
                le.expires = max(le.expires, self._lease_end(now, le.budget_end))
            elif le.state is LeaseState.VERIFYING:
                le.verify_by = now + VERIFY_TIMEOUT_MS
                again.append(le)
        return again

    def excluded_workers(self) -> set[bytes]:
        """Workers that failed this job (LEASE-10): a rejected result, a lease that expired
        after a heartbeat, or more than ``UNCONFIRMED_FORGIVEN`` leases that expired with
        none (the lease may never have reached the worker: a requester that crashed while
        sending it, a lost connection)."""
        out: set[bytes] = set()
        silent: dict[bytes, int] = {}
        for le in self.leases.values():
            if le.state is LeaseState.REJECTED or (le.state is LeaseState.EXPIRED
                                                   and le.heartbeats):
                out.add(le.worker)
            elif le.state is LeaseState.EXPIRED:
                silent[le.worker] = silent.get(le.worker, 0) + 1
        return out | {w for w, n in silent.items() if n > UNCONFIRMED_FORGIVEN}

    # -- persistence --------------------------------------------------------------------------

    def to_row(self, shift: int = 0) -> dict[str, Any]:
        """A row with every time moved by ``shift`` ms (local timeline -> wall clock)."""
        return {"state": self.state.value,
                "leases": [le.to_row(shift) for le in self.leases.values()],
                "history": [(t + shift, a, b) for t, a, b in self.history],
                "reassigned": self.reassigned, "rejected": self.rejected,
                "completed_at": None if self.completed_at is None else self.completed_at + shift}

    @classmethod
    def from_row(cls, job_id: bytes, spec: JobSpec, raw: bytes, row: dict[str, Any],
                 shift: int = 0) -> RequesterJob:
        """The inverse of ``to_row``: ``shift`` maps wall-clock values to the timeline."""
        job = cls(id=job_id, spec=spec, raw=raw, deadline=spec.deadline + shift,
                  state=JobState(row["state"]))
        job.leases = {r["number"]: Lease.from_row(r, shift) for r in row["leases"]}
        job.history = [(int(a) + shift, str(b), str(c)) for a, b, c in row["history"]]
        job.reassigned = row["reassigned"]
        job.rejected = row["rejected"]
        job.completed_at = None if row["completed_at"] is None else row["completed_at"] + shift
        return job
