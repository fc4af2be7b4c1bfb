"""The capability service (spec 02): publishes this node's ad, validates and tables everyone
else's, and keeps the node connected (bootstrap, redial, mesh widening).

It meets the network only through a :class:`p2pnode.ports.Gossip`; the rules themselves are
the core's (``p2pnode.caps.table.validate_ad``, ``CapTable``, ``PeerRateLimiter``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import trio
from prometheus_client import Counter

from p2pnode import __version__
from p2pnode.addrpolicy import DialBudget, filter_ad_addrs, private_addrs_allowed
from p2pnode.caps.model import CapabilityAd
from p2pnode.caps.probe import Hardware, probe
from p2pnode.caps.sync import SYNC_PULLS_IN_FLIGHT, PullSchedule, answer_ads
from p2pnode.caps.table import CapTable, ValidatedAd, validate_ad
from p2pnode.config import Config
from p2pnode.identity import Identity
from p2pnode.log import event
from p2pnode.metrics import Metrics
from p2pnode.ports import Gossip
from p2pnode.ratelimit import PeerRateLimiter
from p2pnode.store import NodeStore
from p2pnode.wire.envelope import SignatureCache
from p2pnode.wire.reasons import ACCEPT, Ignore, Reason, Reject, Verdict

log = logging.getLogger("p2pnode.caps")

# Receivers accept a burst of 5 ads per origin, then one per 2 s (spec 02 §5, RL-1).
ADS_RATE_PER_S = 0.5
ADS_BURST = 5
# ... and per forwarding peer (RL-3): more than an honest network of a few thousand nodes
# relays, far less than a flood of ads from fresh keys.
FWD_RATE_PER_S = 50.0
FWD_BURST = 200
# We publish at most one ad per MIN_PUBLISH_GAP_S ourselves, well inside what receivers
# accept.
MIN_PUBLISH_GAP_S = 2.0
TARGET_PEERS = 8
KNOWN_PEER_MAX_AGE_MS = 24 * 3600 * 1000
# Housekeeping ticks (1 s) between re-announcements of our topic subscriptions.
RESUBSCRIBE_TICKS = 5
# How often the hardware is probed again; a change is published at once (PUB-4).
REPROBE_S = 30.0
# Dials to addresses from ads (ADDR-5): how often the dialler looks for peers to dial, and
# how long one dial may take.
DIAL_TICK_S = 1.0
AD_DIAL_TIMEOUT_S = 3.0
# How often the service looks for peers new on the caps topic to ask for their held ads
# (SYNC-1): a fraction of a round trip on a LAN costs nothing, the topic view is a dict.
SYNC_TICK_S = 0.2


class DialMetrics:
    """Addresses from ads: dropped by the address policy, dialled, deferred by the budget."""

    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.dropped = Counter("p2pnode_ad_addrs_dropped", "Addresses in accepted ads that "
                               "the address policy does not dial, by reason (ADDR-2 to "
                               "ADDR-4)", ["reason"], registry=r)
        self.dials = Counter("p2pnode_ad_dials", "Dials to addresses from ads, by result",
                             ["result"], registry=r)
        self.deferred = Counter("p2pnode_ad_dials_deferred", "Dials to addresses from ads "
                                "put off because the dial budget was spent (ADDR-5)",
                                registry=r)


class SyncMetrics:
    """The held-ads exchange (spec 02 §7): answers asked for, given, refused; ads received."""

    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.pulls = Counter("p2pnode_caps_sync_pulls", "Held-ads answers asked of peers, by "
                             "result (ok, or the reason the answer was cut short)",
                             ["result"], registry=r)
        self.ads = Counter("p2pnode_caps_sync_ads", "Ads received in held-ads answers, by "
                           "outcome (valid, or the reason)", ["outcome"], registry=r)
        self.served = Counter("p2pnode_caps_sync_served", "Held-ads answers given",
                              registry=r)
        self.refused = Counter("p2pnode_caps_sync_refused", "Held-ads requests over the "
                               "stream limits of SYNC-6, reset unread", registry=r)


class CapsService:
    def __init__(self, *, config: Config, identity: Identity, store: NodeStore,
                 metrics: Metrics, table: CapTable, clock: Callable[[], float],
                 hardware: Hardware, gossip: Gossip, topic: str,
                 rng: random.Random, on_change: Callable[[], None] = lambda: None,
                 verified: SignatureCache | None = None) -> None:
        self.config = config
        self.verified = verified if verified is not None else SignatureCache()  # ENV-12
        self.identity = identity
        self.store = store
        self.metrics = metrics
        self.table = table
        self.clock = clock
        self.hardware = hardware
        self.gossip = gossip
        self.topic = topic
        self.rng = rng
        self.on_change = on_change  # the table changed: new candidates for offers
        self.ads_limiter = PeerRateLimiter(rate=ADS_RATE_PER_S, burst=ADS_BURST)
        self.fwd_limiter = PeerRateLimiter(rate=FWD_RATE_PER_S, burst=FWD_BURST)
        self._last_publish = 0.0
        self._publish_now = trio.Event()
        # Mesh peers on the caps topic when our last ad was published (PUB-3).
        self._reached = 0
        self._dialing: set[str] = set()
        # ADDR-6: resolved once; the policy and the budget are the core's (addrpolicy).
        self.allow_private = private_addrs_allowed(config.net_private_addrs, config.listen,
                                                   config.bootstrap)
        self.dial_budget = DialBudget()
        self.dial_metrics = DialMetrics(metrics)
        self._budget_spent = False  # logged once per stretch of deferred dials
        self._saved_addrs: dict[str, list[str]] = {}
        self._to_save: list[tuple[str, list[str], int]] = []  # written off the event loop
        self._own_ad: bytes | None = None  # our latest ad, first in every answer (SYNC-3)
        self.pulls = PullSchedule(self.peer_id)
        self.sync_metrics = SyncMetrics(metrics)

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- ads ------------------------------------------------------------------------------

    def make_ad(self) -> CapabilityAd:
        hw = self.hardware
        kinds = tuple(self.config.caps_kinds)
        # Never below the clock: a node whose state.db was lost still outbids the ads of
        # its former self that other nodes hold (PUB-5). The write is durable (an fsync,
        # milliseconds to tens of them), so ts is read after it: the clock at signing
        # time (PUB-6), not before the disk.
        seq = self.store.next_counter("caps_seq", floor=self.now_ms())
        now = self.now_ms()
        return CapabilityAd(
            net=self.config.network,
            seq=seq, ts=now, ttl=self.config.caps_ttl_s, cores=hw.cores, threads=hw.threads,
            arch=hw.arch, mem=hw.mem, gpus=hw.gpus, kinds=kinds,
            price=tuple(sorted((k, v) for k, v in self.config.caps_price.items() if k in kinds)),
            addrs=tuple(self.public_addrs()[:8]), agent=f"p2pnode-py/{__version__}")

    def public_addrs(self) -> list[str]:
        out = []
        for a in self.gossip.listen_addrs():
            base = a.split("/p2p/")[0]
            if "/ip4/0.0.0.0/" not in base and base not in out:
                out.append(base)
        return out

    def _connected(self, peer_id: str) -> bool:
        return peer_id in self.gossip.connected_peers()

    def validate(self, source: bytes | None, data: bytes,
                 forwarder: str | None = None) -> Verdict:
        """Topic validator for the caps topic: rules of spec 02 §3, counted by reason.

        Over a rate limit is an Ignore for the sender's score (spec 03 PEER-2): an honest
        relay cannot know our limiter's state."""
        key = source.hex() if source else "?"
        now = self.clock()
        if forwarder is not None and forwarder != self.peer_id and not self.fwd_limiter.allow(
                forwarder, now):
            self._count_reject(Reason.RATE_LIMITED)  # RL-3
            return Ignore(Reason.RATE_LIMITED)
        if not self.ads_limiter.allow(key, now):  # RL-1
            self._count_reject(Reason.RATE_LIMITED)
            return Ignore(Reason.RATE_LIMITED)
        verdict, validated = validate_ad(data, net=self.config.network, now_ms=self.now_ms(),
                                         source=source, held_seq=self.table.held_seq,
                                         verified=self.verified)
        if not verdict.ok:
            reason = verdict.reason  # type: ignore[union-attr]
            if isinstance(verdict, Ignore):
                self.metrics.ads_ignored.labels(reason=reason.value).inc()
                self.metrics.reject("caps", reason)
            else:
                self._count_reject(reason)
            event(log, "caps.ad.rejected", logging.DEBUG, reason=reason.value,
                  source=key[:16], detail=getattr(verdict, "detail", ""))
            return verdict
        assert validated is not None
        if not self.table.admits(validated.peer_id, self._connected):  # TBL-6
            self._count_reject(Reason.RATE_LIMITED)
            return Ignore(Reason.RATE_LIMITED)
        # Stored now, before py-libp2p relays it (spec 02 §3): the table does not wait on
        # the relaying, nor on our subscription's queue, and the ad is validated once.
        self._store(validated)
        return ACCEPT

    def _count_reject(self, reason: Reason) -> None:
        self.metrics.ads_rejected.labels(reason=reason.value).inc()
        self.metrics.reject("caps", reason)

    def _store(self, validated: ValidatedAd) -> None:
        if self.table.update(validated.peer_id, validated.ad, self.now_ms(), self._connected,
                             raw=validated.raw):
            addrs = list(validated.ad.addrs)
            dropped = filter_ad_addrs(addrs, self.allow_private).dropped
            for why in dropped:
                self.dial_metrics.dropped.labels(reason=why.value).inc()
            if dropped:
                event(log, "caps.ad.addrs_dropped", logging.DEBUG, peer=validated.peer_id,
                      reasons=sorted({w.value for w in dropped}))
            if (validated.peer_id != self.peer_id and addrs
                    and self._saved_addrs.get(validated.peer_id) != addrs):
                # Remember where peers are, so a restarted node finds them again.
                self._to_save.append((validated.peer_id, addrs, self.now_ms()))
                self._saved_addrs[validated.peer_id] = addrs
            self.on_change()
            self.metrics.ads_accepted.inc()
            self.metrics.table_size.set(len(self.table))
            # seq and ts let a benchmark match each receipt to its publication.
            event(log, "caps.ad.accepted", logging.DEBUG, peer=validated.peer_id,
                  seq=validated.ad.seq, ad_ts=validated.ad.ts)

    # -- held-ads exchange (spec 02 §7) --------------------------------------------------

    def held_ads(self, peer: str) -> list[bytes]:
        """The answer to ``peer``'s request for our held ads (SYNC-3)."""
        self.sync_metrics.served.inc()
        return answer_ads(self.table.live(self.now_ms()), self.now_ms(), self._own_ad,
                          self.peer_id, asker=peer)

    def receive_held(self, peer: str, data: bytes) -> Verdict:
        """One ad of ``peer``'s held-ads answer: RL-3 against ``peer``, then CAPS-1 to
        CAPS-8 as SYNC-5 adapts them, then TBL-6; stored if valid, counted either way."""
        verdict = self._check_held(peer, data)
        outcome = "valid" if verdict.ok else verdict.reason.value  # type: ignore[union-attr]
        self.sync_metrics.ads.labels(outcome=outcome).inc()
        return verdict

    def _check_held(self, peer: str, data: bytes) -> Verdict:
        if not self.fwd_limiter.allow(peer, self.clock()):  # SYNC-5, RL-3
            self._count_reject(Reason.RATE_LIMITED)
            return Ignore(Reason.RATE_LIMITED)
        verdict, validated = validate_ad(data, net=self.config.network, now_ms=self.now_ms(),
                                         source=None, held_seq=self.table.held_seq,
                                         verified=self.verified, synced=True)
        if validated is None:
            # An ad we hold already is the common case of an answer, not a fault: ignores
            # are counted by the exchange's own metric only (receive_held).
            if isinstance(verdict, Reject):
                self._count_reject(verdict.reason)
            return verdict
        if not self.table.admits(validated.peer_id, self._connected):  # TBL-6
            self._count_reject(Reason.RATE_LIMITED)
            return Ignore(Reason.RATE_LIMITED)
        self._store(validated)
        return ACCEPT

    async def pull(self, peer: str) -> int:
        """Ask ``peer`` for its held ads and take in the valid ones; how many were new."""
        ads, cut = await self.gossip.pull_held_ads(peer)
        self.sync_metrics.pulls.labels(result="ok" if cut is None else cut.value).inc()
        new = sum(1 for a in ads if self.receive_held(peer, a).ok)
        event(log, "caps.sync.pulled", logging.DEBUG, peer=peer, ads=len(ads), new=new,
              cut=None if cut is None else cut.value)
        while self._to_save:
            await trio.to_thread.run_sync(self.store.save_peer, *self._to_save.pop(0))
        return new

    async def _sync_loop(self) -> None:
        """Ask every peer that appears on the caps topic for its held ads (SYNC-1, SYNC-2),
        at most SYNC_PULLS_IN_FLIGHT at a time."""
        slots = trio.CapacityLimiter(SYNC_PULLS_IN_FLIGHT)

        async def one(peer: str) -> None:
            async with slots:
                await self.pull(peer)

        async with trio.open_nursery() as nursery:
            while True:
                for p in self.pulls.due(self.gossip.topic_peers(self.topic)):
                    nursery.start_soon(one, p.peer)
                await trio.sleep(SYNC_TICK_S)

    def caps_known(self) -> int:
        now = self.now_ms()
        return sum(1 for e in self.table.live(now) if e.peer_id != self.peer_id)

    # -- the service ----------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.gossip.set_validator(self.topic, self.validate)
        self.gossip.serve_held_ads(self.held_ads, self.sync_metrics.refused.inc)
        sub = await self.gossip.subscribe(self.topic)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, sub)
            nursery.start_soon(self._bootstrap_loop)
            nursery.start_soon(self._dial_loop)
            nursery.start_soon(self._publish_loop)
            nursery.start_soon(self._housekeeping_loop)
            nursery.start_soon(self._reprobe_loop)
            nursery.start_soon(self._sync_loop)
            task_status.started()

    async def _read(self, sub: Any) -> None:
        """Drains our subscription (the validator stored each ad already) and saves the
        addresses of peers that moved, off the event loop."""
        while True:
            await sub.get()
            while self._to_save:
                await trio.to_thread.run_sync(self.store.save_peer, *self._to_save.pop(0))

    async def publish(self) -> None:
        ad = await trio.to_thread.run_sync(self.make_ad)  # its seq is an fsync'd write
        data = ad.encode(self.identity)
        self._own_ad = data
        self._last_publish = self.clock()
        self._reached = self.gossip.mesh_peers(self.topic)
        await self.gossip.publish(self.topic, data)
        self.metrics.ads_published.inc()
        event(log, "caps.ad.published", logging.DEBUG, seq=ad.seq, ad_ts=ad.ts)

    async def _publish_loop(self) -> None:
        interval = self.config.caps_interval_s
        while True:
            await self.publish()
            self._publish_now = trio.Event()
            delay = interval * self.rng.uniform(0.9, 1.1)
            with trio.move_on_after(delay):
                await self._publish_now.wait()
                # Debounce: at most one ad per MIN_PUBLISH_GAP_S (PUB-8).
                gap = self._last_publish + MIN_PUBLISH_GAP_S - self.clock()
                if gap > 0:
                    await trio.sleep(gap)

    async def _dial_loop(self) -> None:
        """Dial peers from addresses in ads while short of TARGET_PEERS: first the peers
        seen in the last day (their last advertised addresses), then those of live ads.

        Only addresses the policy allows (ADDR-1 to ADDR-4), at the budget's pace (ADDR-5),
        one dial per peer at a time, in a task of its own so that a slow dial holds up
        nothing else.
        """
        known = self.store.known_peers(self.now_ms() - KNOWN_PEER_MAX_AGE_MS, TARGET_PEERS)
        async with trio.open_nursery() as nursery:
            while True:
                connected = set(self.gossip.connected_peers())
                wanted = TARGET_PEERS - len(connected) - self.dial_budget.in_flight
                if wanted > 0:
                    known = [(p, a) for p, a in known if p not in connected]
                    live = [(e.peer_id, list(e.ad.addrs)) for e in self.table.live(self.now_ms())
                            if e.peer_id not in connected]
                    self.rng.shuffle(live)  # table order is not the attacker's to choose
                    started = self._dial_some([*known, *live], wanted, nursery)
                    # Known peers are dialled once each; those the budget put off, later.
                    known = [(p, a) for p, a in known if p not in started]
                await trio.sleep(DIAL_TICK_S)

    def _dial_some(self, candidates: list[tuple[str, list[str]]], wanted: int,
                   nursery: trio.Nursery) -> set[str]:
        """Start up to ``wanted`` dials; the peers that will not be dialled (started, or
        with no address the policy allows)."""
        done: set[str] = set()
        for peer_id, addrs in candidates:
            if wanted <= 0:
                break
            if peer_id == self.peer_id or peer_id in self._dialing:
                continue
            dialable = filter_ad_addrs(addrs, self.allow_private).dialable
            if not dialable:
                done.add(peer_id)
                continue
            if not self.dial_budget.try_start(self.clock()):
                self.dial_metrics.deferred.inc()
                if not self._budget_spent:
                    event(log, "peer.dial.deferred", in_flight=self.dial_budget.in_flight,
                          rate_per_s=self.dial_budget.rate)
                    self._budget_spent = True
                break
            self._budget_spent = False
            self._dialing.add(peer_id)
            done.add(peer_id)
            nursery.start_soon(self._dial_one, peer_id, dialable[0])
            wanted -= 1
        return done

    async def _dial_one(self, peer_id: str, addr: str) -> None:
        try:
            ok, err = await self.gossip.dial(f"{addr}/p2p/{peer_id}", AD_DIAL_TIMEOUT_S)
        finally:
            self._dialing.discard(peer_id)
            self.dial_budget.finished()
        self.dial_metrics.dials.labels(result="ok" if ok else "failed").inc()
        event(log, "peer.dial", logging.DEBUG, peer=peer_id, addr=addr, ok=ok, error=err)

    async def _bootstrap_loop(self) -> None:
        """Dial bootstrap peers while none is connected, with exponential backoff."""
        boot = self.config.bootstrap
        if not boot:
            return
        ids = {a.rsplit("/p2p/", 1)[-1] for a in boot}
        backoff = 0.5
        while True:
            connected = set(self.gossip.connected_peers())
            for addr in boot:
                if addr.rsplit("/p2p/", 1)[-1] in connected or self.peer_id in addr:
                    continue
                ok, err = await self.gossip.dial(addr, 5.0)
                event(log, "bootstrap.dial", logging.INFO if ok else logging.WARNING,
                      addr=addr, ok=ok, error=err)
            if set(self.gossip.connected_peers()) & ids:
                backoff = 0.5
                await trio.sleep(5)
            else:
                await trio.sleep(backoff * self.rng.uniform(0.8, 1.2))
                backoff = min(backoff * 2, self.config.bootstrap_retry_max_s)

    async def _reprobe_loop(self) -> None:
        while True:
            await trio.sleep(REPROBE_S)
            hw = await trio.to_thread.run_sync(
                lambda: probe(include_gpus=self.config.caps_probe_gpus, quiet=True))
            if hw != self.hardware:
                event(log, "caps.changed", before=str(self.hardware), after=str(hw))
                self.hardware = hw
                self._publish_now.set()

    async def _housekeeping_loop(self) -> None:
        ticks = 0
        while True:
            await trio.sleep(1.0)
            now = self.now_ms()
            for p in self.table.expire(now):
                event(log, "caps.ad.expired", logging.DEBUG, peer=p)
            self.metrics.table_size.set(len(self.table))
            connected = set(self.gossip.connected_peers())
            self.metrics.peers.set(len(connected))
            ticks += 1
            if await self.gossip.upkeep(resubscribe=ticks % RESUBSCRIBE_TICKS == 0):
                event(log, "pubsub.repaired", logging.DEBUG)
            # PUB-3: our last ad reached nobody (at start, or with every connection lost);
            # now that the mesh has a peer, send a fresh one. A peer that merely joins
            # gets our ad from the held-ads exchange (SYNC-1, SYNC-3), not a publication.
            if self._reached == 0 and self.gossip.mesh_peers(self.topic) > 0:
                self._reached = -1  # one publication is on its way
                self._publish_now.set()
