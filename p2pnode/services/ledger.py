"""The ledger service (spec 07): takes credits and slashes from the ledger topic, the
fraud topic, sync sessions and this node's own requester; stores each durably before it
acknowledges it; closes epochs and keeps their roots; reconciles with peers.

The rules are the pure ``p2pnode.ledger`` modules (elements, state, reconcile, transfer);
this shell runs them as the topic validator (bounded per forwarder, LGR-16), as the two
sides of a ``/sync/1`` session (RCN-1..RCN-9), and on a timer (LGR-11).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge

from p2pnode.ledger import elements, merkle, reconcile, transfer
from p2pnode.ledger.elements import Element, Kind, open_element
from p2pnode.ledger.state import Ledger, Params
from p2pnode.ledger.store import LedgerStore
from p2pnode.log import event
from p2pnode.ports import Exchange, Gossip, SyncNet, TransportError
from p2pnode.ratelimit import PeerRateLimiter
from p2pnode.wire import envelope
from p2pnode.wire.cid import CID_PREFIX
from p2pnode.wire.reasons import ACCEPT, Ignore, Reason, Reject, Verdict, WireError

log = logging.getLogger("p2pnode.ledger")

# LGR-16: elements one forwarder may bring a second on the ledger topic, after a burst.
LEDGER_RATE_PER_S = 50.0
LEDGER_BURST = 200
# RCN-1: a session with a random peer this often, and with each peer when it appears.
SYNC_INTERVAL_S = 10.0
SYNC_TICK_S = 1.0
# RCN-9: every wait of a session, and the whole session.
FRAME_TIMEOUT_S = 10.0
SESSION_TIMEOUT_S = 60.0
# LGR-11: after a start, epochs are closed once a session has ended or after this long.
CATCH_UP_S = 15.0
CLOSE_TICK_S = 0.5
# RCN-1: sessions this node runs as the initiator at once.
SESSIONS_OUT = 4
# LGR-17: what the store holds at most; beyond, new elements are refused (limit_exceeded).
MAX_ELEMENTS = 2_000_000
MAX_BYTES = 4 << 30
FRAUD_QUEUE = 64


class LedgerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.elements = Counter("p2pnode_ledger_elements_taken", "Ledger elements taken, by "
                                "kind and by where they came from", ["kind", "via"],
                                registry=registry)
        self.sessions = Counter("p2pnode_ledger_sync_sessions", "Sync sessions, by role and "
                                "result", ["role", "result"], registry=registry)
        self.sync_bytes = Counter("p2pnode_ledger_sync_bytes", "Reconciliation bytes of "
                                  "sessions this node started, both ways", registry=registry)
        self.held = Gauge("p2pnode_ledger_held", "Ledger elements held", registry=registry)
        self.frozen = Gauge("p2pnode_ledger_epoch_closed", "The newest closed epoch with a "
                            "root", registry=registry)
        self.late = Gauge("p2pnode_ledger_late", "Elements settled after their own epoch",
                          registry=registry)


class LedgerService:
    def __init__(self, *, net: str, params: Params, store: LedgerStore, gossip: Gossip,
                 topic: str, sync: SyncNet, wall_ms: Callable[[], int],
                 clock: Callable[[], float], rng: random.Random, metrics: LedgerMetrics,
                 reject: Callable[[Reason], None],
                 verified: envelope.SignatureCache | None = None,
                 sync_interval_s: float = SYNC_INTERVAL_S,
                 catch_up_s: float = CATCH_UP_S, max_elements: int = MAX_ELEMENTS,
                 max_bytes: int = MAX_BYTES) -> None:
        self.net, self.params, self.store = net, params, store
        self.gossip, self.topic, self.sync = gossip, topic, sync
        self.wall_ms, self.clock, self.rng = wall_ms, clock, rng
        self.metrics, self.reject, self.verified = metrics, reject, verified
        self.sync_interval_s, self.catch_up_s = sync_interval_s, catch_up_s
        self.ledger = Ledger(params)
        for el, settle in store.load(raw=False):
            self.ledger.restore(el, settle)
        self.roots = store.roots()  # epoch -> (root, count, accounts)
        self.max_elements, self.max_bytes = max_elements, max_bytes
        self.bytes_held = store.size()[1]
        self.refused_full = 0
        self.ledger.freeze(max(self.roots, default=-1))
        self.limiter = PeerRateLimiter(rate=LEDGER_RATE_PER_S, burst=LEDGER_BURST)
        self.caught_up = trio.Event()
        self._trees: dict[int, merkle.Tree] = {}
        self._sessions_to: set[str] = set()
        self._resync = False
        self.resyncs = 0
        # Fraud proofs the fraud topic took, waiting to become slashes (bounded: a proof
        # dropped here still arrives by the next sync session).
        self._frauds_in, self._frauds_out = trio.open_memory_channel[bytes](FRAUD_QUEUE)
        self.frauds_dropped = 0
        metrics.held.set_function(lambda: len(self.ledger))
        metrics.frozen.set_function(lambda: self.ledger.frozen)
        metrics.late.set_function(lambda: self.ledger.late)

    # -- taking elements ------------------------------------------------------------------

    def _open(self, data: bytes) -> Element:
        return open_element(data, net=self.net, now_ms=self.wall_ms(), verified=self.verified)

    def _decide(self, el: Element, claim: int | None) -> int | None:
        """The settlement epoch to store ``el`` with, or None if nothing would change;
        WireError(LIMIT_EXCEEDED) for a new element when the store is full (LGR-17)."""
        if el.id not in self.ledger and (len(self.ledger) >= self.max_elements
                                         or self.bytes_held + len(el.raw) > self.max_bytes):
            self.refused_full += 1
            raise WireError(Reason.LIMIT_EXCEEDED, "the ledger store is full")
        return self.ledger.change(el, self.wall_ms(), claim)

    def _hold(self, el: Element, settle: int, via: str) -> bool:
        """Hold ``el``, stored with ``settle``, in memory (without its bytes: the store has
        them). Runs on the event loop, as does every change of the in-memory ledger."""
        if settle <= self.ledger.frozen:  # an epoch closed while it was stored (LGR-11)
            settle = self.ledger.frozen + 1
            self.store.add([(el, settle)], self.wall_ms())
        held = self.ledger.held.get(el.id)
        if held is not None and held[1] <= settle:  # lowered meanwhile: keep the lower
            if held[1] < settle:
                self.store.add([(el, held[1])], self.wall_ms())
            return False
        self.ledger.restore(replace(el, raw=b""), settle)
        if held is None:
            self.bytes_held += len(el.raw)
            self.metrics.elements.labels(kind=el.kind.value, via=via).inc()
        return True

    def _keep(self, el: Element, claim: int | None, via: str) -> bool:
        """Store ``el`` durably, then hold it (LGR-15); whether anything changed."""
        settle = self._decide(el, claim)
        if settle is None:
            return False
        self.store.add([(el, settle)], self.wall_ms())
        return self._hold(el, settle, via)

    async def _keep_async(self, el: Element, claim: int | None, via: str) -> bool:
        """As :meth:`_keep`, the fsync off the event loop."""
        settle = self._decide(el, claim)
        if settle is None:
            return False
        await trio.to_thread.run_sync(self.store.add, [(el, settle)], self.wall_ms())
        return self._hold(el, settle, via)

    def validate(self, source: bytes | None, data: bytes, forwarder: str | None = None
                 ) -> Verdict:
        """The ledger topic's validator: ACCEPT only once the element is durable."""
        if forwarder == self.gossip.peer_id:
            return ACCEPT  # our own publication: stored before it was published
        if forwarder is not None and not self.limiter.allow(forwarder, self.clock()):
            self.reject(Reason.RATE_LIMITED)
            return Ignore(Reason.RATE_LIMITED)
        try:
            el = self._open(data)
        except WireError as e:
            self.reject(e.reason)
            event(log, "ledger.rejected", logging.INFO, reason=e.reason.value, detail=e.detail)
            return Reject(e.reason, e.detail)
        if el.kind is Kind.SLASH:  # slashes travel on the fraud topic (LGR-16)
            self.reject(Reason.UNKNOWN_TYPE)
            return Reject(Reason.UNKNOWN_TYPE, "a slash on the ledger topic")
        try:
            new = self._keep(el, None, "gossip")
        except WireError as e:  # the store is full (LGR-17)
            self.reject(e.reason)
            return Ignore(e.reason, e.detail)
        if not new:
            self.reject(Reason.DUPLICATE)
            return Ignore(Reason.DUPLICATE)
        return ACCEPT

    async def add_credit(self, receipt_raw: bytes, job_raw: bytes) -> bool:
        """Our requester's receipt (RCP-1): held, then published on the ledger topic."""
        data = elements.credit(receipt_raw, job_raw)
        try:
            el = self._open(data)
        except WireError as e:
            event(log, "ledger.own_refused", logging.WARNING, reason=e.reason.value,
                  detail=e.detail)
            return False
        try:
            new = await self._keep_async(el, None, "own")
        except WireError as e:
            event(log, "ledger.own_refused", logging.WARNING, reason=e.reason.value,
                  detail=e.detail)
            return False
        if new:
            try:
                await self.gossip.publish(self.topic, data)
            except Exception as e:  # published again by the next sync session
                event(log, "ledger.publish_failed", logging.WARNING, error=str(e))
        return new

    async def add_fraud(self, fraud_raw: bytes) -> bool:
        """A fraud proof the fraud topic took: it becomes a slash (LGR-5)."""
        data = elements.slash(fraud_raw)
        try:
            el = await trio.to_thread.run_sync(self._open, data)
        except WireError as e:
            self.reject(e.reason)
            return False
        try:
            return await self._keep_async(el, None, "fraud")
        except WireError as e:
            self.reject(e.reason)
            return False

    def queue_fraud(self, fraud_raw: bytes) -> None:
        try:
            self._frauds_in.send_nowait(fraud_raw)
        except trio.WouldBlock:
            self.frauds_dropped += 1

    async def _fraud_loop(self) -> None:
        async for data in self._frauds_out:
            await self.add_fraud(data)

    async def add_own(self, credits: list[tuple[bytes, bytes]]) -> int:
        """At start: our requester's receipts of accepted leases the ledger lacks (RCP-1:
        a receipt is durable before the acceptance, the ledger's copy after it)."""
        n = 0
        for receipt_raw, job_raw in credits:
            n += await self.add_credit(receipt_raw, job_raw)
        return n

    # -- epochs ---------------------------------------------------------------------------

    def tree(self, epoch: int) -> merkle.Tree:
        t = self._trees.get(epoch)
        if t is None:
            t = self.ledger.tree(epoch)
            if epoch <= self.ledger.frozen:
                self._trees = {epoch: t}  # keep the newest one asked for
        return t

    def root(self, epoch: int) -> tuple[bytes, int, int] | None:
        """(root, elements, accounts) of a closed epoch, or None while it is open."""
        if epoch in self.roots:
            return self.roots[epoch]
        if epoch > self.ledger.frozen:
            return None
        t = self.tree(epoch)
        return t.root, self.ledger.count(epoch), len(t.accounts)

    async def close_due(self) -> list[int]:
        """LGR-11: fix the roots of the epochs closed by now; the epochs closed."""
        last = self.params.last_closed(self.wall_ms())
        first = self.ledger.frozen + 1
        if last < first:
            return []
        self.ledger.freeze(last)  # first: from now on nothing settles in these epochs
        snapshot = Ledger(self.params, dict(self.ledger.held), last)
        fixed = await trio.to_thread.run_sync(self._fix_roots, snapshot, first, last)
        for e, r in fixed:
            self.roots[e] = r
            event(log, "ledger.epoch_closed", epoch=e, root=r[0].hex(), accounts=r[2],
                  elements=r[1])
        return [e for e, _ in fixed]

    def _fix_roots(self, ledger: Ledger, first: int, last: int
                   ) -> list[tuple[int, tuple[bytes, int, int]]]:
        settled = {e for e in ledger.settled_epochs() if first <= e <= last}
        out = []
        for e in sorted(settled | {last}):  # an epoch where nothing settled: the root before
            t = ledger.tree(e)
            r = (t.root, ledger.count(e), len(t.accounts))
            self.store.save_root(e, *r)
            out.append((e, r))
        return out

    def roots_through(self, last: int) -> dict[int, bytes]:
        """The root of every closed epoch from the first one with a settled element."""
        settled = self.ledger.settled_epochs()
        if not settled:
            return {}
        out: dict[int, bytes] = {}
        root = merkle.EMPTY_ROOT
        for e in range(settled[0], min(last, self.ledger.frozen) + 1):
            held = self.roots.get(e)
            if held is not None:
                root = held[0]
            elif e in settled:
                root = self.tree(e).root
            out[e] = root
        return out

    async def _close_loop(self) -> None:
        with trio.move_on_after(self.catch_up_s):
            await self.caught_up.wait()
        while True:
            await self.close_due()
            await trio.sleep(CLOSE_TICK_S)

    # -- sync sessions (RCN-1 .. RCN-9) ---------------------------------------------------

    def _keys(self) -> list[bytes]:
        return sorted(i[len(CID_PREFIX):] for i in self.ledger.held)


    async def _take_items(self, ex: Exchange, n: int, via: str) -> int:
        """Read ``n`` items, store each; the number held durably afterwards."""
        kept = 0
        for _ in range(min(n, transfer.MAX_SESSION_ITEMS)):
            item = transfer.decode_item(await ex.receive(FRAME_TIMEOUT_S))
            try:
                el = await trio.to_thread.run_sync(self._open, item.element)
                await self._keep_async(el, item.settle, via)
            except WireError as e:  # RCN-8: dropped with its reason; the session goes on
                self.reject(e.reason)
                continue
            kept += 1
        return kept

    async def _send_items(self, ex: Exchange, keys: list[bytes]) -> int:
        ids = [CID_PREFIX + k for k in keys[:transfer.MAX_SESSION_ITEMS]]
        sent = 0
        for i in range(0, len(ids), 64):  # the bytes come from the store, 64 at a time
            for raw, settle in await trio.to_thread.run_sync(self.store.items, ids[i:i + 64]):
                await ex.send(transfer.encode_item(raw, settle))
                sent += 1
        return sent

    async def serve(self, ex: Exchange, peer: str) -> None:
        """The responder's side of one session."""
        result = "failed"
        try:
            with trio.fail_after(SESSION_TIMEOUT_S):
                m = reconcile.Responder(self._keys())
                while not m.done:
                    data = await ex.receive(FRAME_TIMEOUT_S)
                    for out in await trio.to_thread.run_sync(m.receive, data):
                        await ex.send(out)
                if m.have is None:
                    result = "same"
                else:
                    kept = await self._take_items(ex, m.have, "sync")
                    await self._send_items(ex, m.wanted)
                    await ex.send(transfer.encode_ack(kept))
                    result = "merged"
            self.caught_up.set()  # LGR-11: a completed session
        except WireError as e:  # counted once, here; the stream is closed by the shell
            self.reject(e.reason)
            result = e.reason.value
        finally:
            self.metrics.sessions.labels(role="responder", result=result).inc()

    async def sync_with(self, peer: str) -> str:
        """Run one session as the initiator; its result ("same", "merged" or why not)."""
        if peer in self._sessions_to:
            return "busy"
        self._sessions_to.add(peer)
        result = "failed"
        ex: Exchange | None = None
        try:
            with trio.fail_after(SESSION_TIMEOUT_S):
                ex = await self.sync.open_sync(peer)
                m = reconcile.Initiator(self._keys())
                await ex.send(m.start())
                while not m.done:
                    data = await ex.receive(FRAME_TIMEOUT_S)
                    for out in await trio.to_thread.run_sync(m.receive, data):
                        await ex.send(out)
                self.metrics.sync_bytes.inc(m.sent_bytes + m.received_bytes)
                if m.same:
                    result = "same"
                else:
                    sent = await self._send_items(ex, m.extra)
                    await self._take_items(ex, len(m.missing), "sync")
                    transfer.decode_ack(await ex.receive(FRAME_TIMEOUT_S), sent)
                    result = "merged"
            self.caught_up.set()
        except WireError as e:
            self.reject(e.reason)
            result = e.reason.value
        except trio.TooSlowError:
            self.reject(Reason.TRUNCATED)
            result = "timeout"
        except TransportError:
            result = "unreachable"
        finally:
            self._sessions_to.discard(peer)
            if ex is not None:
                await ex.close()
            self.metrics.sessions.labels(role="initiator", result=result).inc()
        return result

    async def _sync_loop(self) -> None:
        """RCN-1: a session with each peer that appears on the topic, and one with a
        random peer every ``sync_interval_s``."""
        seen: dict[str, int] = {}
        last = self.clock()
        slots = trio.CapacityLimiter(SESSIONS_OUT)

        async def one(peer: str) -> None:
            async with slots:
                await self.sync_with(peer)

        async with trio.open_nursery() as nursery:
            while True:
                peers = self.gossip.topic_peers(self.topic)
                for p, token in peers.items():
                    if seen.get(p) != token:
                        seen[p] = token
                        nursery.start_soon(one, p)
                for p in set(seen) - set(peers):
                    del seen[p]
                if self._resync and peers:  # asked for: a session with every peer
                    self._resync = False
                    self.resyncs += 1
                    for p in sorted(peers):
                        nursery.start_soon(one, p)
                elif peers and self.clock() - last >= self.sync_interval_s:
                    last = self.clock()
                    nursery.start_soon(one, self.rng.choice(sorted(peers)))
                await trio.sleep(SYNC_TICK_S)

    def request_resync(self) -> None:
        """Reconcile with every peer at the next tick (an anchored root differed from ours:
        spec 08 §2; the ledger's elements, not its fixed roots, are what a session fixes)."""
        self._resync = True

    # -- the service ----------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        now = self.wall_ms()
        credits = sum(1 for _ in self.ledger.elements(Kind.CREDIT))
        return {"elements": len(self.ledger), "receipts": credits,
                "slashes": len(self.ledger) - credits, "late": self.ledger.late,
                "epoch": self.params.epoch(now), "closed": self.ledger.frozen,
                "last_settled": max(self.ledger.settled_epochs(), default=-1),
                "epoch_len_s": self.params.epoch_len_ms / 1000,
                "grace_s": self.params.grace_ms / 1000,
                "fingerprint": self.ledger.fingerprint().hex()}

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.gossip.set_validator(self.topic, self.validate)
        self.sync.serve_sync(self.serve)
        sub = await self.gossip.subscribe(self.topic)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._drain, sub)
            nursery.start_soon(self._close_loop)
            nursery.start_soon(self._fraud_loop)
            nursery.start_soon(self._sync_loop)
            task_status.started()

    async def _drain(self, sub: Any) -> None:
        while True:  # the validator did the work
            await sub.get()
