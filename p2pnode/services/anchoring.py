"""Anchoring (spec 08, draft): the node anchors the newest closed epoch's root when the
rotation says it may (ANC-1), checks every anchored root against its own, and claims what
it earned against the newest one (CLM-1, CLM-2).

A chain backend is blocking I/O (SQLite or JSON-RPC): every call runs in a thread. A chain
that cannot be reached is retried on the next tick; nothing in the ledger depends on it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge

from p2pnode.chain.announce import AnchorAnnounce, Announced, Announcements, open_announce
from p2pnode.chain.base import Chain, ChainError, ChainReason, Claim
from p2pnode.identity import Identity
from p2pnode.ledger.state import Params
from p2pnode.log import event
from p2pnode.ports import Gossip
from p2pnode.services.ledger import LedgerService
from p2pnode.wire import envelope
from p2pnode.wire.reasons import ACCEPT, Ignore, Reason, Reject, Verdict, WireError

log = logging.getLogger("p2pnode.chain")

TICK_S = 2.0
MAX_BACKOFF_S = 60.0


def fixed_root(roots: dict[int, tuple[bytes, int, int]], frozen: int, epoch: int
               ) -> tuple[bytes, int, int] | None:
    """The fixed root of a closed ``epoch`` from the roots a ledger kept (an epoch in which
    nothing settled has the root of the one before it, LGR-11); None while it is open."""
    if epoch > frozen:
        return None
    held = [e for e in roots if e <= epoch]
    return roots[max(held)] if held else (bytes(32), 0, 0)


class AnchorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.anchored = Counter("p2pnode_chain_anchored", "Epoch roots this node anchored",
                                registry=registry)
        self.refused = Counter("p2pnode_chain_refused", "Chain transactions refused, by "
                               "reason", ["reason"], registry=registry)
        self.mismatches = Counter("p2pnode_chain_root_mismatches", "Anchored roots that "
                                  "differ from this node's own", registry=registry)
        self.latest = Gauge("p2pnode_chain_latest_epoch", "The newest anchored epoch",
                            registry=registry)


class Announcer:
    """The anchors topic (ANC-4): this node's announcement of each root it fixes, and the
    validator that keeps everyone's (bounded, per forwarder)."""

    RATE_PER_S = 5.0
    BURST = 50

    def __init__(self, *, net: str, identity: Identity, gossip: Gossip, topic: str,
                 ledger_params: Params, wall_ms: Callable[[], int], clock: Callable[[], float],
                 reject: Callable[[Reason], None],
                 verified: envelope.SignatureCache | None = None) -> None:
        from p2pnode.ratelimit import PeerRateLimiter

        self.net, self.identity, self.gossip, self.topic = net, identity, gossip, topic
        self.params, self.wall_ms, self.clock = ledger_params, wall_ms, clock
        self.reject, self.verified = reject, verified
        self.table = Announcements()
        self.limiter = PeerRateLimiter(rate=self.RATE_PER_S, burst=self.BURST)
        self.announced = -1
        self.frozen = -1  # the ledger's, as of the last announcement

    def validate(self, source: bytes | None, data: bytes, forwarder: str | None = None
                 ) -> Verdict:
        if forwarder == self.gossip.peer_id:
            return ACCEPT
        if forwarder is not None and not self.limiter.allow(forwarder, self.clock()):
            self.reject(Reason.RATE_LIMITED)
            return Ignore(Reason.RATE_LIMITED)
        try:
            a = open_announce(data, net=self.net, current=self.params.epoch(self.wall_ms()),
                              closed=self.frozen, verified=self.verified)
        except WireError as e:
            self.reject(e.reason)
            return Reject(e.reason, e.detail)
        if not self.table.add(a):
            return Ignore(Reason.DUPLICATE)
        return ACCEPT

    async def announce(self, ledger: LedgerService) -> None:
        """Announce the newest fixed root, once per epoch."""
        e = self.frozen = ledger.ledger.frozen
        if e <= self.announced or e not in ledger.roots:
            return
        root, count, _ = ledger.roots[e]
        body = AnchorAnnounce(net=self.net, epoch=e, root=root, count=count,
                              ts=self.wall_ms())
        data = body.seal(self.identity)
        self.table.add(Announced(self.identity.public_key, body))
        self.announced = e
        try:
            await self.gossip.publish(self.topic, data)
        except Exception as err:  # the next epoch's announcement goes out anyway
            event(log, "chain.announce_failed", logging.WARNING, error=str(err))

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.gossip.set_validator(self.topic, self.validate)
        sub = await self.gossip.subscribe(self.topic)
        task_status.started()
        while True:
            await sub.get()


class AnchorService:
    def __init__(self, *, chain: Chain, ledger: LedgerService, account: bytes, payee: str,
                 metrics: AnchorMetrics, wall_s: Callable[[], float],
                 on_mismatch: Callable[[int], None] | None = None,
                 announcer: Announcer | None = None) -> None:
        self.chain, self.ledger, self.account, self.payee = chain, ledger, account, payee
        self.metrics, self.wall_s, self.on_mismatch = metrics, wall_s, on_mismatch
        self.announcer = announcer
        self.deferred: list[int] = []  # epochs not anchored: another root was announced
        self.checked = -1  # the newest anchored epoch compared with our root
        self.latest: tuple[int, bytes] | None = None
        self.mismatches: dict[int, tuple[str, str]] = {}  # epoch -> (ours, anchored), hex
        self.anchored_by_me: list[int] = []
        self.errors = 0
        self.bound = False

    # -- one step, blocking (runs in a thread, on a copy of the ledger's fixed roots) ----

    def step(self, frozen: int, roots: dict[int, tuple[bytes, int, int]],
             announced: dict[int, dict[bytes, bytes]] | None = None) -> None:
        self.latest = self.chain.latest()
        if not self.bound:
            self._bind()
        self._anchor(frozen, roots, announced or {})
        self._check(frozen, roots)

    def _bind(self) -> None:
        try:
            self.chain.bind(self.account, self.payee)
            self.bound = True
        except ChainError as e:
            if e.reason is not ChainReason.NOT_ANCHORER:
                raise
            self.bound = True  # not an anchorer: an anchorer binds us (CLM-3)

    def _anchor(self, frozen: int, roots: dict[int, tuple[bytes, int, int]],
                announced: dict[int, dict[bytes, bytes]]) -> None:
        e = frozen
        if e < 0 or (self.latest is not None and e <= self.latest[0]) or e in self.deferred:
            return
        fixed = fixed_root(roots, frozen, e)
        if fixed is None:
            return
        root, count, _ = fixed
        if root == bytes(32):
            return  # nothing earned yet: no root worth anchoring
        others = [s for s, r in announced.get(e, {}).items()
                  if s != self.account and r != root and self.chain.is_anchorer_key(s)]
        if others:  # ANC-5: another anchorer fixed another root; reconcile, do not anchor
            self.deferred.append(e)
            self.metrics.refused.labels(reason="root_disputed").inc()
            event(log, "chain.root_disputed", logging.WARNING, epoch=e, ours=root.hex(),
                  others=len(others))
            if self.on_mismatch is not None:
                self.on_mismatch(e)
            return
        try:
            self.chain.anchor(e, root, count)
        except ChainError as err:  # not our turn, or someone was first
            if err.reason not in (ChainReason.NOT_ANCHORER, ChainReason.ROOT_EXISTS,
                                  ChainReason.STALE_EPOCH):
                raise
            return
        self.anchored_by_me.append(e)
        self.metrics.anchored.inc()
        event(log, "chain.anchored", epoch=e, root=root.hex(), count=count)
        self.latest = (e, root)

    def _check(self, frozen: int, roots: dict[int, tuple[bytes, int, int]]) -> None:
        for a in self.chain.anchors(since=self.checked + 1):
            ours = fixed_root(roots, frozen, a.epoch)
            if ours is None:
                return  # not closed here yet: check it next time
            self.checked = a.epoch
            self.metrics.latest.set(a.epoch)
            if ours[0] != a.root:
                self.mismatches[a.epoch] = (ours[0].hex(), a.root.hex())
                self.metrics.mismatches.inc()
                event(log, "chain.root_mismatch", logging.ERROR, epoch=a.epoch,
                      ours=ours[0].hex(), anchored=a.root.hex(), anchorer=a.anchorer)
                if self.on_mismatch is not None:
                    self.on_mismatch(a.epoch)

    async def claim(self) -> Claim:
        """CLM-1: claim what this node earned, by proof against the newest anchored root
        (the tree is built on the event loop, the transaction sent from a thread)."""
        latest = await trio.to_thread.run_sync(self.chain.latest)
        if latest is None:
            raise ChainError(ChainReason.NO_ROOT)
        epoch = latest[0]
        if epoch > self.ledger.ledger.frozen:
            raise ChainError(ChainReason.NO_ROOT, f"epoch {epoch} is not closed here yet")
        tree = self.ledger.tree(epoch)
        i = tree.index(self.account)
        if i is None:
            raise ChainError(ChainReason.NOTHING_TO_CLAIM, "nothing earned through epoch "
                             f"{epoch}")
        return await trio.to_thread.run_sync(self.chain.claim, self.account, tree.amounts[i],
                                             tree.proof(self.account) or [])

    def status(self) -> dict[str, Any]:
        latest = self.latest
        frozen = self.ledger.ledger.frozen
        return {"backend": self.chain.name, "sender": self.chain.sender,
                "deferred": self.deferred,
                "latest_epoch": latest[0] if latest else None,
                "lag": (frozen - latest[0]) if latest and frozen >= 0 else None,
                "anchored_by_me": len(self.anchored_by_me), "checked": self.checked,
                "mismatches": {str(e): {"ours": o, "anchored": a}
                               for e, (o, a) in self.mismatches.items()},
                "errors": self.errors, "claimed": self.chain.claimed(self.account)}

    # -- the service --------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        backoff = TICK_S
        while True:
            if self.announcer is not None:
                await self.announcer.announce(self.ledger)
            try:
                await trio.to_thread.run_sync(
                    self.step, self.ledger.ledger.frozen, dict(self.ledger.roots),
                    self.announcer.table.snapshot() if self.announcer else None)
                backoff = TICK_S
            except (ChainError, OSError, sqlite3.Error) as e:  # retried, with backoff
                self.errors += 1
                reason = e.reason.value if isinstance(e, ChainError) else "unavailable"
                self.metrics.refused.labels(reason=reason).inc()
                event(log, "chain.error", logging.WARNING, error=str(e))
                backoff = min(MAX_BACKOFF_S, backoff * 2)
            await trio.sleep(backoff)
