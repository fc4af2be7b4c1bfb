"""Capability challenges (spec 06 §6): challenge peers' ads, attest, take others' attestations.

The rules are in the pure :mod:`p2pnode.proofs.challenge`; this shell picks whom to
challenge (one at a time, each peer whose ad claims matmul and that this node has no live
attestation of), submits the challenge as a job addressed to it alone (CHL-1), turns the
job's end into a signed attestation and gossips it (CHL-3), and validates the attestations
others gossip (CHL-4), bounded per forwarder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import trio

from p2pnode.caps.table import CapTable
from p2pnode.identity import Identity
from p2pnode.jobs.market import JobState, RequesterJob
from p2pnode.jobs.model import Requirements
from p2pnode.log import event
from p2pnode.ports import Gossip
from p2pnode.proofs.challenge import (
    CHALLENGE_DEADLINE_S,
    MAX_SUBJECTS,
    TARGET_KEY,
    Attestation,
    AttestTable,
    open_attestation,
    pick_subject,
)
from p2pnode.ratelimit import PeerRateLimiter
from p2pnode.services.requester import RequesterService
from p2pnode.wire import envelope
from p2pnode.wire.reasons import ACCEPT, Ignore, Reason, Reject, Verdict, WireError

log = logging.getLogger("p2pnode.challenge")

# CHL-4: attestations a forwarder may bring, a second after a burst.
ATTEST_RATE_PER_S = 2.0
ATTEST_BURST = 16


class ChallengeService:
    def __init__(self, *, net: str, identity: Identity, gossip: Gossip, topic: str,
                 table: CapTable, requester: RequesterService,
                 count: Callable[[str, str], None], reject: Callable[[Reason], None],
                 interval_s: float, verified: envelope.SignatureCache | None = None) -> None:
        self.net = net
        self.identity = identity
        self.gossip = gossip
        self.topic = topic
        self.table = table
        self.requester = requester
        self.count = count
        self.reject = reject
        self.interval_s = interval_s
        self.verified = verified
        self.attests = AttestTable()
        self.limiter = PeerRateLimiter(rate=ATTEST_RATE_PER_S, burst=ATTEST_BURST)
        self.tried: dict[bytes, int] = {}  # subject -> ad seq challenged (one try per seq)

    def wall_ms(self) -> int:
        return self.requester.clock.wall_ms()

    def status(self, subject: bytes) -> str:
        return self.attests.status(subject, self.wall_ms(), self.identity.public_key)

    def rank(self, subject: bytes) -> int:
        from p2pnode.proofs.challenge import offer_rank

        return offer_rank(self.status(subject))

    # -- the topic (CHL-4) ----------------------------------------------------------------

    def validate(self, source: bytes | None, data: bytes,
                 forwarder: str | None = None) -> Verdict:
        if forwarder == self.gossip.peer_id:
            return ACCEPT  # our own, taken when made
        if forwarder is not None and not self.limiter.allow(forwarder,
                                                            self.requester.clock.now_ms() / 1000):
            self.reject(Reason.RATE_LIMITED)
            return Ignore(Reason.RATE_LIMITED)
        try:
            s = open_attestation(data, net=self.net, now_ms=self.wall_ms(),
                                 verified=self.verified)
        except WireError as e:
            self.reject(e.reason)
            return Reject(e.reason, e.detail)
        if not self.attests.add(s):
            return Ignore(Reason.STALE_SEQ)
        self.count("challenge", "attestation_taken")
        return ACCEPT

    # -- challenging (CHL-1 .. CHL-3) -----------------------------------------------------

    def _next_subject(self) -> tuple[bytes, int, int] | None:
        now = self.wall_ms()
        live = self.table.live(now)
        if len(self.tried) > MAX_SUBJECTS:  # bounded: forget subjects no longer in the table
            keep = {e.ad.signer for e in live}
            self.tried = {k: v for k, v in self.tried.items() if k in keep}
        return pick_subject((e.ad for e in live), self.identity.public_key, self.status,
                            self.tried)

    async def _challenge(self, subject: bytes, seq: int, n: int) -> None:
        from p2pnode.jobs import tensors

        self.tried[subject] = seq
        seed = os.urandom(16)  # the worker must not know the matrices before the job
        a = tensors.random_int8_matrix(n, n, seed + b"a")
        b = tensors.random_int8_matrix(n, n, seed + b"b")
        inputs = {"a": tensors.encode_matrix(a), "b": tensors.encode_matrix(b)}
        try:
            job = await self.requester.submit(
                "matmul", inputs, {}, Requirements(), deadline_s=CHALLENGE_DEADLINE_S,
                lease_s=CHALLENGE_DEADLINE_S, verify={TARGET_KEY: subject})
        except (WireError, OSError) as e:
            event(log, "challenge.not_submitted", logging.INFO, error=str(e))
            return
        self.count("challenge", "started")
        with trio.move_on_after(CHALLENGE_DEADLINE_S + 10):
            while not self._decided(job, subject):
                await self.requester.changed(job.id).wait()
        await self._attest(subject, seq, n, job)

    def _decided(self, job: RequesterJob, subject: bytes) -> bool:
        """CHL-3: only the subject may hold the job (CHL-1), so its end, the subject's first
        rejected result, a lease it let run out, or a fraud proof that bars it decides."""
        return job.terminal or bool(job.rejected) or bool(job.reassigned) or \
            self.requester.machine.bars.barred(subject, self.requester.clock.now_ms())

    async def _attest(self, subject: bytes, seq: int, n: int, job: RequesterJob) -> None:
        ok = job.state is JobState.COMPLETED
        ms = (job.completed_at - job.spec.created) if ok and job.completed_at else 0
        a = Attestation(net=self.net, subject=subject, seq=seq, ok=ok, n=n, ms=max(0, ms),
                        ts=self.wall_ms())
        data = a.seal(self.identity)
        self.attests.add(open_attestation(data, net=self.net, now_ms=self.wall_ms()))
        self.count("challenge", "attested" if ok else "failed")
        event(log, "challenge.attested", subject=subject.hex()[:16], ok=ok, n=n, ms=a.ms)
        await self.gossip.publish(self.topic, data)

    def summary(self) -> dict[str, Any]:
        now = self.wall_ms()
        own = [self.status(e.ad.signer) for e in self.table.live(now)
               if e.ad.signer != self.identity.public_key]
        return {"attested": own.count("attested"), "failed": own.count("failed"),
                "never": own.count("never"), "subjects": len(self.attests)}

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.gossip.set_validator(self.topic, self.validate)
        sub = await self.gossip.subscribe(self.topic)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._drain, sub)
            task_status.started()
            if self.interval_s <= 0:
                return
            while True:
                await trio.sleep(self.interval_s)
                target = self._next_subject()
                if target is not None:
                    await self._challenge(*target)

    async def _drain(self, sub: Any) -> None:
        while True:
            await sub.get()
