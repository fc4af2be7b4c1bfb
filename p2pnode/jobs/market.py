"""The job market state machines (spec/04-jobs.md §4, §5.2), sans-IO.

``RequesterJob`` is one job as its requester sees it; ``WorkerPolicy`` decides what a worker
may take. Both take decoded messages and ``now`` (ms) and return decisions; the shell
(p2pnode/market_service.py) signs, sends, persists and runs executors.

The requester's job state is a table (``TRANSITIONS``) of (state, event) -> next state, so
the spec can print it and the tests can walk every edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from p2pnode.identity import peer_id_str
from p2pnode.jobs.model import JobSpec, Requirements, created_in_future
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


S, E = JobState, Ev
# (state, event) -> next state. "Leases left" decides between the two targets of some
# events; the machine picks the first target whose guard holds (see RequesterJob._step).
TRANSITIONS: dict[tuple[JobState, Ev], JobState] = {
    (S.PUBLISHED, E.LEASED): S.LEASED,
    (S.LEASED, E.LEASED): S.LEASED,
    (S.RUNNING, E.LEASED): S.RUNNING,
    (S.RESULT, E.LEASED): S.RESULT,
    (S.LEASED, E.HEARTBEAT): S.RUNNING,
    (S.RUNNING, E.HEARTBEAT): S.RUNNING,
    (S.RESULT, E.HEARTBEAT): S.RESULT,
    (S.LEASED, E.RESULT): S.RESULT,
    (S.RUNNING, E.RESULT): S.RESULT,
    (S.RESULT, E.RESULT): S.RESULT,
    (S.RESULT, E.VERIFIED): S.PUBLISHED,  # redundancy > 1: more results to come
    (S.RESULT, E.VERIFIED_ALL): S.COMPLETED,
    (S.RESULT, E.REJECTED): S.PUBLISHED,  # reassigned
    (S.LEASED, E.LEASE_EXPIRED): S.PUBLISHED,  # reassigned
    (S.RUNNING, E.LEASE_EXPIRED): S.PUBLISHED,
    (S.RESULT, E.LEASE_EXPIRED): S.PUBLISHED,
    (S.PUBLISHED, E.DEADLINE): S.FAILED,
    (S.LEASED, E.DEADLINE): S.FAILED,
    (S.RUNNING, E.DEADLINE): S.FAILED,
    (S.RESULT, E.DEADLINE): S.FAILED,
    (S.RESULT, E.GAVE_UP): S.FAILED,
}
TERMINAL = frozenset({S.COMPLETED, S.FAILED})
MAX_REJECTED_RESULTS = 3


class LeaseState(StrEnum):
    ACTIVE = "active"
    VERIFYING = "verifying"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXPIRED = "expired"


@dataclass
class Lease:
    number: int
    worker: bytes  # Ed25519 public key
    price: int
    granted: int  # ms
    expires: int  # ms
    state: LeaseState = LeaseState.ACTIVE
    heartbeats: int = 0
    progress: int = 0
    output: bytes | None = None
    reason: str = ""
    compute_ms: int = 0  # as the worker reported it; informational, not verified

    def to_row(self) -> dict[str, Any]:
        return {"number": self.number, "worker": self.worker.hex(), "price": self.price,
                "granted": self.granted, "expires": self.expires, "state": self.state.value,
                "heartbeats": self.heartbeats, "progress": self.progress,
                "output": self.output.hex() if self.output else None, "reason": self.reason,
                "compute_ms": self.compute_ms}

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> Lease:
        return cls(number=r["number"], worker=bytes.fromhex(r["worker"]), price=r["price"],
                   granted=r["granted"], expires=r["expires"], state=LeaseState(r["state"]),
                   heartbeats=r["heartbeats"], progress=r["progress"],
                   output=bytes.fromhex(r["output"]) if r["output"] else None,
                   reason=r["reason"], compute_ms=int(r.get("compute_ms", 0)))


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
    """Decision: fetch ``output`` from the worker and check it, then call ``on_verified``."""

    lease: Lease


@dataclass(frozen=True, slots=True)
class Decided:
    """Decision: this result was already judged; answer with the recorded verdict."""

    lease: Lease


@dataclass
class RequesterJob:
    """One job as its requester tracks it (spec 04 §4)."""

    id: bytes
    spec: JobSpec
    raw: bytes
    state: JobState = JobState.PUBLISHED
    leases: dict[int, Lease] = field(default_factory=dict)
    history: list[tuple[int, str, str]] = field(default_factory=list)
    reassigned: int = 0
    rejected: int = 0
    completed_at: int | None = None

    @classmethod
    def new(cls, job_id: bytes, spec: JobSpec, raw: bytes, now: int) -> RequesterJob:
        job = cls(id=job_id, spec=spec, raw=raw)
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
        if ev in (E.LEASE_EXPIRED, E.REJECTED):
            self.reassigned += 1
            self._log(now, "reassigned", detail)

    def _settle(self) -> None:
        # With redundancy > 1 several leases live side by side; the job shows the most
        # advanced of them. The table above says which moves are legal at all.
        live = self.live_leases()
        if any(lease.state is LeaseState.VERIFYING for lease in live):
            self.state = S.RESULT
        elif any(lease.heartbeats for lease in live):
            self.state = S.RUNNING
        elif live:
            self.state = S.LEASED
        else:
            self.state = S.PUBLISHED

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

    def _lease_of(self, worker: bytes) -> Lease | None:
        for le in self.leases.values():
            if le.worker == worker:
                return le
        return None

    def _lease_end(self, now: int) -> int:
        return min(now + self.spec.lease_s * 1000, self.spec.deadline)

    # -- events -----------------------------------------------------------------------------

    def on_claim(self, worker: bytes, price: int, now: int) -> Grant | Refuse:
        """A worker claims the job (LEASE-3)."""
        if self.terminal:
            return Refuse(Reason.BAD_STATE, f"job is {self.state.value}")
        if now >= self.spec.deadline:
            return Refuse(Reason.DEADLINE_PASSED)
        if price > self.spec.max_price:
            return Refuse(Reason.BAD_FIELD, f"price {price} > max_price {self.spec.max_price}")
        held = self._lease_of(worker)
        if held is not None:
            if held.state in (LeaseState.ACTIVE, LeaseState.VERIFYING):
                return Grant(held)  # a duplicate claim is idempotent
            return Refuse(Reason.BAD_STATE, f"this worker's lease is {held.state.value}")
        if self.needs_workers() == 0:
            return Refuse(Reason.BUSY, "fully leased")
        number = max(self.leases, default=0) + 1
        lease = Lease(number=number, worker=worker, price=price, granted=now,
                      expires=self._lease_end(now))
        self.leases[number] = lease
        self._log(now, "claimed", f"by {peer_id_str(worker)}")
        self._step(E.LEASED, now)
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
        lease.expires = self._lease_end(now)
        lease.progress = min(progress, 1000)
        first = lease.heartbeats == 0
        lease.heartbeats += 1
        if first:
            self._step(E.HEARTBEAT, now)
            self._log(now, "running", f"lease {number}")
        return Grant(lease)

    def on_result(self, worker: bytes, number: int, output: bytes, now: int,
                  compute_ms: int = 0) -> Verify | Decided | Refuse:
        """The leaseholder returns a result (LEASE-5, LEASE-7)."""
        lease = self.leases.get(number)
        if lease is None or lease.worker != worker:
            return Refuse(Reason.NOT_LEASEHOLDER, f"lease {number}")
        if lease.state in (LeaseState.ACCEPTED, LeaseState.REJECTED) and lease.output == output:
            return Decided(lease)  # a repeated result gets the same verdict
        if now >= self.spec.deadline:
            return Refuse(Reason.DEADLINE_PASSED)
        checked = self._check_holder(worker, number, now)
        if isinstance(checked, Refuse):
            return checked
        if lease.state is LeaseState.VERIFYING:
            return Refuse(Reason.BUSY, "result already being verified")
        if lease.state is not LeaseState.ACTIVE or self.terminal:
            return Refuse(Reason.BAD_STATE, f"lease is {lease.state.value}")
        lease.state = LeaseState.VERIFYING
        lease.output = output
        lease.compute_ms = compute_ms
        self._step(E.RESULT, now)
        self._log(now, "result", f"lease {number} output {output.hex()[:16]}")
        return Verify(lease)

    def on_verified(self, number: int, ok: bool, reason: str, now: int) -> Lease:
        """The shell finished checking a result (fetch + verification policy; LEASE-8)."""
        lease = self.leases[number]
        if lease.state is not LeaseState.VERIFYING:
            return lease
        if ok:
            lease.state = LeaseState.ACCEPTED
            done = len(self.accepted_leases()) >= self.spec.redundancy
            self._step(E.VERIFIED_ALL if done else E.VERIFIED, now)
            self._log(now, "verified", f"lease {number}")
            if done:
                self.completed_at = now
        else:
            lease.state = LeaseState.REJECTED
            lease.reason = reason
            self.rejected += 1
            self._log(now, "rejected", f"lease {number}: {reason}")
            if self.rejected >= MAX_REJECTED_RESULTS:
                self._step(E.GAVE_UP, now)
                self._log(now, "failed", "too many rejected results")
            else:
                self._step(E.REJECTED, now, f"after rejected lease {number}")
        return lease

    def on_tick(self, now: int) -> list[str]:
        """Time passes: expire leases and the job itself (LEASE-9). Returns what happened."""
        happened: list[str] = []
        if self.terminal:
            return happened
        if now >= self.spec.deadline:
            for le in self.live_leases():
                le.state = LeaseState.EXPIRED
                le.reason = Reason.DEADLINE_PASSED.value
            self._step(E.DEADLINE, now)
            self._log(now, "expired", "deadline passed")
            return ["expired"]
        for le in list(self.leases.values()):
            if le.state is LeaseState.ACTIVE and now > le.expires:
                le.state = LeaseState.EXPIRED
                le.reason = Reason.LEASE_EXPIRED.value
                self._log(now, "lease_expired", f"lease {le.number}")
                self._step(E.LEASE_EXPIRED, now, f"after expired lease {le.number}")
                happened.append("reassigned")
        return happened

    def excluded_workers(self) -> set[bytes]:
        """Workers that already failed this job (expired or rejected): offer it elsewhere."""
        return {le.worker for le in self.leases.values()
                if le.state in (LeaseState.EXPIRED, LeaseState.REJECTED)}

    # -- persistence --------------------------------------------------------------------------

    def to_row(self) -> dict[str, Any]:
        return {"state": self.state.value, "leases": [le.to_row() for le in
                                                       self.leases.values()],
                "history": self.history, "reassigned": self.reassigned,
                "rejected": self.rejected, "completed_at": self.completed_at}

    @classmethod
    def from_row(cls, job_id: bytes, spec: JobSpec, raw: bytes,
                 row: dict[str, Any]) -> RequesterJob:
        job = cls(id=job_id, spec=spec, raw=raw, state=JobState(row["state"]))
        job.leases = {r["number"]: Lease.from_row(r) for r in row["leases"]}
        job.history = [(int(a), str(b), str(c)) for a, b, c in row["history"]]
        job.reassigned = row["reassigned"]
        job.rejected = row["rejected"]
        job.completed_at = row["completed_at"]
        return job


# -- the worker's side ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerProfile:
    """What this worker is and accepts: from its hardware probe and config."""

    kinds: frozenset[str]
    prices: dict[str, int]
    concurrency: int
    cores: int
    mem: int
    gpu_mem: int
    gpus: int

    def meets(self, req: Requirements) -> bool:
        if req.gpu and self.gpus == 0:
            return False
        return self.cores >= req.cores and self.mem >= req.mem and self.gpu_mem >= req.gpu_mem

    @property
    def resource_classes(self) -> tuple[str, ...]:
        return ("cpu", "gpu") if self.gpus else ("cpu",)


class WorkerPolicy:
    """Which jobs a worker takes (WRK-1, WRK-2); tracks the jobs it holds."""

    def __init__(self, profile: WorkerProfile) -> None:
        self.profile = profile
        self.active: set[bytes] = set()

    def consider(self, job_id: bytes, spec: JobSpec, now: int,
                 net: str) -> Reason | None:
        """None if the worker should claim the job, else the reason it won't."""
        p = self.profile
        if spec.net != net:
            return Reason.WRONG_NETWORK
        if spec.kind not in p.kinds:
            return Reason.REQUIREMENTS_UNMET
        if not p.meets(spec.req):
            return Reason.REQUIREMENTS_UNMET
        if spec.max_price < p.prices.get(spec.kind, 0):
            return Reason.BAD_FIELD
        if now >= spec.deadline:
            return Reason.DEADLINE_PASSED
        if created_in_future(spec, now):
            return Reason.CLOCK_SKEW
        if job_id in self.active:
            return Reason.BAD_STATE
        if len(self.active) >= p.concurrency:
            return Reason.BUSY
        return None

    def price_for(self, kind: str) -> int:
        return self.profile.prices.get(kind, 0)

    def take(self, job_id: bytes) -> bool:
        """Reserve a slot; False if none is free (the concurrency bound is never exceeded)."""
        if job_id in self.active or len(self.active) >= self.profile.concurrency:
            return False
        self.active.add(job_id)
        return True

    def release(self, job_id: bytes) -> None:
        self.active.discard(job_id)

    @property
    def free(self) -> int:
        return self.profile.concurrency - len(self.active)
