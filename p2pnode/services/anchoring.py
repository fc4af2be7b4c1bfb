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

from p2pnode.chain.base import Chain, ChainError, ChainReason, Claim
from p2pnode.log import event
from p2pnode.services.ledger import LedgerService

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


class AnchorService:
    def __init__(self, *, chain: Chain, ledger: LedgerService, account: bytes, payee: str,
                 metrics: AnchorMetrics, wall_s: Callable[[], float],
                 on_mismatch: Callable[[int], None] | None = None) -> None:
        self.chain, self.ledger, self.account, self.payee = chain, ledger, account, payee
        self.metrics, self.wall_s, self.on_mismatch = metrics, wall_s, on_mismatch
        self.checked = -1  # the newest anchored epoch compared with our root
        self.latest: tuple[int, bytes] | None = None
        self.mismatches: dict[int, tuple[str, str]] = {}  # epoch -> (ours, anchored), hex
        self.anchored_by_me: list[int] = []
        self.errors = 0
        self.bound = False

    # -- one step, blocking (runs in a thread, on a copy of the ledger's fixed roots) ----

    def step(self, frozen: int, roots: dict[int, tuple[bytes, int, int]]) -> None:
        self.latest = self.chain.latest()
        if not self.bound:
            self._bind()
        self._anchor(frozen, roots)
        self._check(frozen, roots)

    def _bind(self) -> None:
        try:
            self.chain.bind(self.account, self.payee)
            self.bound = True
        except ChainError as e:
            if e.reason is not ChainReason.NOT_ANCHORER:
                raise
            self.bound = True  # not an anchorer: an anchorer binds us (CLM-3)

    def _anchor(self, frozen: int, roots: dict[int, tuple[bytes, int, int]]) -> None:
        e = frozen
        if e < 0 or (self.latest is not None and e <= self.latest[0]):
            return
        fixed = fixed_root(roots, frozen, e)
        if fixed is None:
            return
        root, count, _ = fixed
        if root == bytes(32):
            return  # nothing earned yet: no root worth anchoring
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
            try:
                await trio.to_thread.run_sync(self.step, self.ledger.ledger.frozen,
                                              dict(self.ledger.roots))
                backoff = TICK_S
            except (ChainError, OSError, sqlite3.Error) as e:  # retried, with backoff
                self.errors += 1
                reason = e.reason.value if isinstance(e, ChainError) else "unavailable"
                self.metrics.refused.labels(reason=reason).inc()
                event(log, "chain.error", logging.WARNING, error=str(e))
                backoff = min(MAX_BACKOFF_S, backoff * 2)
            await trio.sleep(backoff)
