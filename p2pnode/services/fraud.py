"""The fraud topic (spec 06 §3): validate every fraud proof, bar proven cheaters, publish ours.

The rules are the pure :func:`p2pnode.proofs.fraud.check` (FRD-1 .. FRD-6); this shell runs
them as the topic validator, bounded per forwarder (FRD-9), and hands each new fraud to the
requester's machine (FRD-7). numpy is imported with the first proof, not at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from p2pnode.log import event
from p2pnode.ports import Gossip
from p2pnode.proofs.bars import BAR_MS, BarList
from p2pnode.ratelimit import PeerRateLimiter
from p2pnode.wire import envelope
from p2pnode.wire.reasons import ACCEPT, Ignore, Reason, Reject, Verdict, WireError

log = logging.getLogger("p2pnode.fraud")

# FRD-9: a proof costs O(k * m) to check and up to MAX_FRAUD_SIZE to decode; a forwarder
# may bring this many a second, after a burst.
FRAUD_RATE_PER_S = 1.0
FRAUD_BURST = 8
# Proofs of frauds already taken that are not relayed again.
MAX_SEEN = 4096

OnFraud = Callable[[bytes, bytes, int], None]  # (cheater, job, until wall ms)


class FraudService:
    def __init__(self, *, net: str, gossip: Gossip, topic: str,
                 count: Callable[[str, str], None], reject: Callable[[Reason], None],
                 wall_ms: Callable[[], int], clock: Callable[[], float],
                 on_fraud: OnFraud, verified: envelope.SignatureCache | None = None,
                 bar_ms: int = BAR_MS) -> None:
        self.net = net
        self.gossip = gossip
        self.topic = topic
        self.count = count
        self.reject = reject
        self.wall_ms = wall_ms
        self.clock = clock
        self.on_fraud = on_fraud
        self.verified = verified
        self.bar_ms = min(bar_ms, BAR_MS)  # FRD-7: this node's own bar, at most BAR_MS
        self.limiter = PeerRateLimiter(rate=FRAUD_RATE_PER_S, burst=FRAUD_BURST)
        self.bars = BarList(MAX_SEEN)  # in wall ms
        # Set by the node: every valid proof of a new fraud, ours or gossiped (the ledger's
        # slashes, spec 07 LGR-5).
        self.on_proof: Callable[[bytes], None] | None = None
        self.taken = 0  # valid proofs of new frauds
        self.published = 0

    def validate(self, source: bytes | None, data: bytes,
                 forwarder: str | None = None) -> Verdict:
        if forwarder == self.gossip.peer_id:
            return ACCEPT  # our own publication (``publish``): made and taken here
        if forwarder is not None and not self.limiter.allow(forwarder, self.clock()):
            self.reject(Reason.RATE_LIMITED)
            return Ignore(Reason.RATE_LIMITED)
        from p2pnode.proofs.fraud import check

        now = self.wall_ms()
        try:
            fraud = check(data, net=self.net, now_ms=now, verified=self.verified)
        except WireError as e:
            self.reject(e.reason)
            event(log, "fraud.rejected", logging.INFO, reason=e.reason.value, detail=e.detail)
            return Reject(e.reason, e.detail)
        if self.bars.known(fraud.cheater, fraud.job):
            return Ignore(Reason.STALE_SEQ)  # FRD-8: taken already
        self.take(fraud.cheater, fraud.job, fraud.until)
        if self.on_proof is not None:
            self.on_proof(data)
        return ACCEPT

    def take(self, cheater: bytes, job: bytes, until: int) -> None:
        """FRD-7: bar ``cheater`` (a proof's ``until`` is its result's ts + BAR_MS; this
        node's bar ends ``bar_ms`` after that ts). Remembered for the proof's whole life,
        so that it is not relayed again."""
        self.bars.bar(cheater, job, until, self.wall_ms())
        until = until - BAR_MS + self.bar_ms
        self.taken += 1
        self.count("fraud", "barred")
        event(log, "fraud.barred", cheater=cheater.hex()[:16], job=job.hex(), until=until)
        self.on_fraud(cheater, job, until)

    async def publish(self, data: bytes, cheater: bytes, job: bytes, until: int) -> None:
        """Our own proof: taken here, then published."""
        if not self.bars.known(cheater, job):
            self.take(cheater, job, until)
            if self.on_proof is not None:
                self.on_proof(data)
        self.published += 1
        self.count("fraud", "published")
        await self.gossip.publish(self.topic, data)

    def summary(self) -> dict[str, Any]:
        now = self.wall_ms()
        return {"taken": self.taken, "published": self.published,
                "barred": len(self.bars.snapshot(now))}

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.gossip.set_validator(self.topic, self.validate)
        sub = await self.gossip.subscribe(self.topic)
        task_status.started()
        while True:  # the validator did the work; drain the subscription
            await sub.get()
