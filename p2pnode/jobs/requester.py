"""The requester as one machine over all its jobs (spec 04 §3, §4, §5.1, §6), sans-IO.

It takes events — a message received, an offer answered, an output checked, time passing —
with ``now`` and returns a decision for the peer (for exchanges) and the *effects* the shell
must carry out: persist a job, offer a job to a worker, check an output, put a DHT record,
provide a discovery key. It never reads a clock: ``now`` is milliseconds on the node's
*local timeline*, which is monotonic (the shell starts it at the wall clock and advances it
with a monotonic clock, so a step of the wall clock moves no lease, LEASE-13). Randomness
comes from the ``random.Random`` it is given, so a simulator replays it from one seed.

``next_deadline()`` is the earliest time at which ``on_timer`` has something to do: the
shell arms one timer for it instead of polling.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from p2pnode.jobs import discovery
from p2pnode.jobs.market import Await, Decided, Decision, Grant, Lease, Refuse, RequesterJob
from p2pnode.jobs.matching import Capacity, unmet
from p2pnode.jobs.model import MAX_LIST_JOBS, challenge_target
from p2pnode.proofs.bars import BarList
from p2pnode.wire.reasons import Reason

# OFR-2: after a refused offer, when to offer the same job to the same worker again; after
# a "busy", when to offer that worker any job again.
OFFER_BACKOFF_MS = 5_000
OFFER_BUSY_BACKOFF_MS = 750
# DHT-7: a job that a direct offer leased within this time is not put in the DHT.
DHT_PUBLISH_DELAY_MS = 2_000
# Local policy (spec 04 §8): a terminal job is forgotten this long after it ended (the
# node's `jobs_retention_s`), and the machine holds at most MAX_JOBS jobs. Over the cap the
# terminal job that ended first goes; a job that is not terminal is never forgotten, so a
# new one is refused (`limit_exceeded`) while MAX_JOBS are open.
JOB_RETENTION_MS = 86_400_000
MAX_JOBS = 10_000


# -- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """A live entry of the capability table, as the machine needs it (OFR-1)."""

    peer: str  # PeerID text
    key: bytes  # Ed25519 public key
    capacity: Capacity
    rank: int = 1  # CHL-6: 0 attested by our own challenge, 1 never, 2 failed it


# -- effects ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Persist:
    """Store the job durably (XCH-9) before the reply that goes with these effects."""

    job: bytes


@dataclass(frozen=True, slots=True)
class Offer:
    """Open a ``/job/1`` exchange to ``worker`` with a ``job.offer`` (OFR-3)."""

    job: bytes
    worker: str


@dataclass(frozen=True, slots=True)
class CheckOutput:
    """Fetch the lease's output from its worker and check it (VER-1), before ``by``."""

    job: bytes
    lease: int
    worker: bytes
    output: bytes
    size: int
    by: int
    commit: bytes = b""


@dataclass(frozen=True, slots=True)
class PutRecord:
    """Put the job's signed spec into the DHT under ``key`` (DHT-7)."""

    job: bytes
    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Provide:
    """Provide a discovery key in the DHT (DHT-9)."""

    key: str


@dataclass(frozen=True, slots=True)
class Finished:
    """A job reached a terminal state."""

    job: bytes


Effect = Persist | Offer | CheckOutput | PutRecord | Provide | Finished


class Requester:
    """Every job this node requested, and the policy around them (spec 04 §3.3, §4)."""

    def __init__(self, net: str, *, rng: random.Random, offers: bool = True,
                 max_output_bytes: int = 1 << 26, retention_ms: int = JOB_RETENTION_MS,
                 max_jobs: int = MAX_JOBS) -> None:
        self.net = net
        self.rng = rng
        self.offers_enabled = offers
        self.max_output_bytes = max_output_bytes
        self.retention_ms = retention_ms
        self.max_jobs = max_jobs
        self.jobs: dict[bytes, RequesterJob] = {}
        self._ended: dict[bytes, int] = {}  # terminal job -> local time it ended (or loaded)
        self.forgotten = {"retention": 0, "cap": 0}  # jobs let go, by why (for metrics)
        self.refused = 0  # submissions refused at the cap
        self._submitted: dict[bytes, int] = {}  # job -> local time this process took it
        self._published: set[bytes] = set()
        self._offering: set[bytes] = set()  # jobs with an offer in flight
        self._inflight: set[str] = set()  # workers with an offer in flight
        self._offered: dict[tuple[bytes, str], int] = {}  # (job, worker) -> next try
        self._busy_until: dict[str, int] = {}
        self._provided: dict[str, int] = {}  # discovery key -> bucket
        # Workers a valid fraud proof bars from leases (FRD-7), in this machine's time.
        self.bars = BarList()

    # -- jobs -------------------------------------------------------------------------------

    def room(self) -> Reason | None:
        """Whether a new job may be added now: at the cap the terminal job that ended first
        is forgotten to make room; with none, ``limit_exceeded`` (and it is counted)."""
        if len(self.jobs) >= self.max_jobs:
            self._evict_over(self.max_jobs - 1)
        if len(self.jobs) >= self.max_jobs:
            self.refused += 1
            return Reason.LIMIT_EXCEEDED
        return None

    def _evict_over(self, cap: int) -> None:
        while len(self.jobs) > cap and self._ended:
            oldest = min(self._ended, key=lambda j: (self._ended[j], j))
            self._drop(oldest)
            self.forgotten["cap"] += 1

    def _drop(self, job_id: bytes) -> None:
        del self.jobs[job_id]
        self._ended.pop(job_id, None)
        self._forget(job_id)

    def add(self, job: RequesterJob, now: int, *, resumed: bool = False) -> list[Effect]:
        """A job submitted now (after ``room``), or loaded from storage after a restart
        (XCH-10). A loaded job that is not terminal is always taken; loaded terminal jobs
        are kept within the retention time and the cap."""
        self.jobs[job.id] = job
        if job.terminal:
            self._ended[job.id] = now
        else:
            self._submitted[job.id] = now
        self._evict_over(self.max_jobs)
        if not resumed:
            return [Persist(job.id)]
        if job.terminal:
            return []
        again = job.resume(now)
        return [Persist(job.id), *(self._check(job, le) for le in again)]

    def _check(self, job: RequesterJob, lease: Lease, size: int = 0) -> CheckOutput:
        assert lease.output is not None
        return CheckOutput(job.id, lease.number, lease.worker, lease.output, size,
                           lease.verify_by, lease.commit)

    def _after(self, job: RequesterJob, before: tuple[str, int], now: int) -> list[Effect]:
        out: list[Effect] = []
        if (job.state.value, len(job.history)) != before:
            out.append(Persist(job.id))
        # Only on the event that ends the job: a repeated result or a late claim on a
        # finished job changes nothing and must not count it as finished again.
        if job.terminal and job.state.value != before[0]:
            out.append(Finished(job.id))
            self._forget(job.id)
            self._ended[job.id] = now
        return out

    def _forget(self, job_id: bytes) -> None:
        self._offered = {k: v for k, v in self._offered.items() if k[0] != job_id}
        self._submitted.pop(job_id, None)
        self._published.discard(job_id)

    # -- messages (LEASE-3 .. LEASE-8, XCH-5, XCH-8) ---------------------------------------

    def on_claim(self, job_id: bytes, worker: bytes, price: int, now: int,
                 capacity: Capacity | None) -> tuple[Grant | Refuse, list[Effect]]:
        """A claim; ``capacity`` is the claimant's live capability ad, if the requester
        has one (LEASE-3: only a qualified worker may hold a lease)."""
        job = self.jobs.get(job_id)
        if job is None:
            return Refuse(Reason.UNKNOWN_JOB), []
        if self.bars.barred(worker, now):  # FRD-7
            return Refuse(Reason.BARRED, "a fraud proof bars this worker"), []
        target = challenge_target(job.spec)
        if target is not None and worker != target:  # CHL-1
            return Refuse(Reason.REQUIREMENTS_UNMET, "a challenge for another worker"), []
        qualified = capacity is not None and unmet(capacity, job.spec) is None
        before = (job.state.value, len(job.history))
        d = job.on_claim(worker, price, now, qualified)
        return d, self._after(job, before, now)

    def on_heartbeat(self, job_id: bytes, worker: bytes, number: int, progress: int,
                     now: int) -> Grant | Refuse:
        """A heartbeat. Renewals are not persisted: a restarted requester extends its
        active leases instead (``RequesterJob.resume``), so no heartbeat costs a write."""
        job = self.jobs.get(job_id)
        if job is None:
            return Refuse(Reason.UNKNOWN_JOB)
        return job.on_heartbeat(worker, number, progress, now)

    def on_result(self, job_id: bytes, worker: bytes, number: int, output: bytes, size: int,
                  now: int, compute_ms: int = 0,
                  commit: bytes = b"") -> tuple[Decision, list[Effect]]:
        job = self.jobs.get(job_id)
        if job is None:
            return Refuse(Reason.UNKNOWN_JOB), []
        before = (job.state.value, len(job.history))
        d = job.on_result(worker, number, output, now, compute_ms, commit)
        effects = self._after(job, before, now)
        if isinstance(d, Refuse | Decided | Await):
            return d, effects
        if size > self.max_output_bytes:  # VER-1: judged without a fetch
            lease = job.on_verified(number, False, Reason.TOO_LARGE.value, now, checked=False)
            return Decided(lease), self._after(job, before, now)
        return d, [*effects, self._check(job, d.lease, size)]

    def on_checked(self, job_id: bytes, number: int, ok: bool, reason: str, now: int,
                   checked: bool) -> tuple[Lease | None, list[Effect]]:
        """The shell checked an output (VER-1, VER-3). Returns the lease to answer with."""
        job = self.jobs.get(job_id)
        if job is None or number not in job.leases:
            return None, []
        before = (job.state.value, len(job.history))
        lease = job.on_verified(number, ok, reason, now, checked)
        return lease, self._after(job, before, now)

    def on_query(self, kinds: Iterable[str], resource_class: str) -> list[bytes]:
        """XCH-8: open jobs of those kinds; class "gpu" sees both classes."""
        wanted = set(kinds)
        return [j.id for j in self.jobs.values()
                if j.needs_workers() and j.spec.kind in wanted
                and (resource_class == "gpu" or j.spec.req.resource_class == "cpu")
                ][:MAX_LIST_JOBS]

    def spec_of(self, job_id: bytes) -> bytes | None:
        job = self.jobs.get(job_id)
        return job.raw if job is not None else None

    def bar(self, worker: bytes, job: bytes, until: int, now: int) -> None:
        """FRD-7: ``worker`` gets no offer and no lease before ``until``."""
        self.bars.bar(worker, job, until, now)

    # -- offers (OFR-1, OFR-2) ---------------------------------------------------------------

    def candidates(self, job: RequesterJob, table: Sequence[Candidate], now: int) -> list[str]:
        """Workers to offer ``job`` to, best first: qualified, not excluded, not offered
        it lately; those holding the fewest of our live leases first, ties at random."""
        excluded = job.excluded_workers() | {le.worker for le in job.live_leases()}
        target = challenge_target(job.spec)
        out = [c for c in table if c.key not in excluded and not self.bars.barred(c.key, now)
               and (target is None or c.key == target)
               and unmet(c.capacity, job.spec) is None
               and self._offered.get((job.id, c.peer), 0) <= now]
        self.rng.shuffle(out)
        held: dict[bytes, int] = {}
        for j in self.jobs.values():
            for le in j.live_leases():
                held[le.worker] = held.get(le.worker, 0) + 1
        out.sort(key=lambda c: (c.rank, held.get(c.key, 0)))
        return [c.peer for c in out]

    def wants_offers(self) -> bool:
        """Whether ``offers`` could offer anything: a job that needs workers and has no
        offer in flight (so the shell builds the candidate table only then)."""
        return self.offers_enabled and any(
            job.id not in self._offering and job.needs_workers() for job in self.jobs.values())

    def offers(self, table: Sequence[Candidate], now: int) -> list[Offer]:
        """Offers to make now, oldest job first: one in flight per job and per worker,
        none to a worker that said it was busy a moment ago."""
        if not self.offers_enabled:
            return []
        out = []
        for job in sorted(self.jobs.values(), key=lambda j: j.spec.created):
            if job.id in self._offering or not job.needs_workers():
                continue
            free = [p for p in self.candidates(job, table, now) if p not in self._inflight
                    and self._busy_until.get(p, 0) <= now]
            if not free:
                continue
            peer = free[0]
            self._offering.add(job.id)
            self._inflight.add(peer)
            self._offered[(job.id, peer)] = now + OFFER_BACKOFF_MS
            out.append(Offer(job.id, peer))
        return out

    def on_offer_done(self, job_id: bytes, worker: str, now: int, busy: bool = False) -> None:
        """An offer's exchange ended (claimed, refused, failed). A busy worker frees up
        soon: any job may try it again shortly."""
        self._offering.discard(job_id)
        self._inflight.discard(worker)
        if busy:
            self._offered.pop((job_id, worker), None)
            self._busy_until[worker] = now + OFFER_BUSY_BACKOFF_MS

    # -- time (LEASE-9, LEASE-12, DHT-7, DHT-9) ---------------------------------------------

    def on_timer(self, now: int, wall_ms: int) -> list[Effect]:
        out: list[Effect] = []
        for job in list(self.jobs.values()):
            if job.terminal:
                continue
            before = (job.state.value, len(job.history))
            job.on_tick(now)
            out += self._after(job, before, now)
            if job.terminal or not job.needs_workers() or job.id in self._published:
                continue
            if (now - self._submitted.get(job.id, now) >= DHT_PUBLISH_DELAY_MS
                    or not self.offers_enabled):
                self._published.add(job.id)
                out.append(PutRecord(job.id, discovery.job_record_key(job.id), job.raw))
        bucket = discovery.bucket_of(wall_ms)
        for key in sorted({discovery.discovery_key(self.net, j.spec.kind,
                                                   j.spec.req.resource_class, bucket)
                           for j in self.jobs.values() if j.needs_workers()}):
            if self._provided.get(key) != bucket:
                self._provided[key] = bucket
                out.append(Provide(key))
        # Keys of buckets gone by are never provided again: forget them.
        self._provided = {k: b for k, b in self._provided.items() if b == bucket}
        self._busy_until = {p: t for p, t in self._busy_until.items() if t > now}
        self._offered = {k: t for k, t in self._offered.items() if t > now}
        for job_id in [j for j, t in self._ended.items() if t + self.retention_ms <= now]:
            self._drop(job_id)
            self.forgotten["retention"] += 1
        return out

    def next_deadline(self, now: int, wall_ms: int) -> int | None:
        """When ``on_timer`` next has work: a lease or verification falling due, a job's
        deadline, a DHT publication, the next bucket for jobs that need workers, a terminal
        job's retention running out."""
        times = [t for j in self.jobs.values() if (t := j.next_deadline()) is not None]
        if self._ended:
            times.append(min(self._ended.values()) + self.retention_ms)
        needy = [j for j in self.jobs.values() if j.needs_workers()]
        for j in needy:
            if j.id not in self._published:
                times.append(self._submitted.get(j.id, now) + DHT_PUBLISH_DELAY_MS)
        if needy and self.offers_enabled:
            # A backoff that ends makes a worker a candidate again; a new or changed
            # capability ad is an event of its own (the shell wakes the machine for it).
            times += [t for t in (*self._offered.values(), *self._busy_until.values())
                      if t > now]
        if needy:
            bucket_end = (discovery.bucket_of(wall_ms) + 1) * discovery.BUCKET_MS
            times.append(now + bucket_end - wall_ms)
        return min(times, default=None)

