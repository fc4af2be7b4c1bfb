"""The Node: one trio nursery wiring the sans-IO core to the libp2p shell.

Everything the node runs lives in the nursery of :meth:`Node.run`; shutdown is cancelling it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from p2pnode import __version__
from p2pnode.caps.model import CapabilityAd
from p2pnode.caps.probe import Hardware, probe
from p2pnode.caps.table import CapTable, validate_ad
from p2pnode.config import STATE_DB, Config
from p2pnode.identity import Identity
from p2pnode.log import event
from p2pnode.metrics import Metrics
from p2pnode.ratelimit import PeerRateLimiter
from p2pnode.store import NodeStore
from p2pnode.wire.reasons import Ignore, Reason

log = logging.getLogger("p2pnode.node")

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


@dataclass
class NodeInfo:
    peer_id: str
    net: str
    addrs: list[str] = field(default_factory=list)


class Node:
    def __init__(
        self,
        home: Path,
        config: Config,
        identity: Identity,
        *,
        clock: Callable[[], float] = time.time,
        hardware: Hardware | None = None,
    ) -> None:
        self.home = home
        self.config = config
        self.identity = identity
        self.clock = clock
        self.metrics = Metrics()
        self.table = CapTable()
        self.store = NodeStore(home / STATE_DB)
        self.hardware = hardware
        self.stack: Any = None
        self.api_addr: str | None = None
        self.metrics_addr: str | None = None
        self.started_at = clock()
        self._ads_limiter = PeerRateLimiter(rate=ADS_RATE_PER_S, burst=ADS_BURST)
        self._fwd_limiter = PeerRateLimiter(rate=FWD_RATE_PER_S, burst=FWD_BURST)
        self._last_publish = 0.0
        self._publish_now = trio.Event()
        self._known_topic_peers: dict[str, int] = {}
        self._dialing: set[str] = set()
        self._saved_addrs: dict[str, list[str]] = {}
        self.market: Any = None

    # -- core glue ---------------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    @property
    def topic(self) -> str:
        from p2pnode.net.host import caps_topic

        return caps_topic(self.config.network)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def make_ad(self) -> CapabilityAd:
        hw = self.hardware
        assert hw is not None
        kinds = tuple(self.config.caps_kinds)
        now = self.now_ms()
        return CapabilityAd(
            net=self.config.network,
            # Never below the clock: a node whose state.db was lost still outbids the
            # ads of its former self that other nodes hold (spec 02, PUB rules).
            seq=self.store.next_counter("caps_seq", floor=now),
            ts=now,
            ttl=self.config.caps_ttl_s,
            cores=hw.cores,
            threads=hw.threads,
            arch=hw.arch,
            mem=hw.mem,
            gpus=hw.gpus,
            kinds=kinds,
            price=tuple(sorted((k, v) for k, v in self.config.caps_price.items() if k in kinds)),
            addrs=tuple(self._public_addrs()[:8]),
            agent=f"p2pnode-py/{__version__}",
        )

    def _public_addrs(self) -> list[str]:
        if self.stack is None:
            return []
        out = []
        for a in self.stack.listen_addrs():
            base = a.split("/p2p/")[0]
            if "/ip4/0.0.0.0/" not in base and base not in out:
                out.append(base)
        return out

    def _connected(self, peer_id: str) -> bool:
        return self.stack is not None and peer_id in self.stack.connected_peers()

    def validate_caps_message(self, source: bytes | None, data: bytes,
                              forwarder: str | None = None) -> bool:
        """Topic validator for the caps topic: rules of spec 02 §3, counted by reason."""
        key = source.hex() if source else "?"
        now = self.clock()
        if forwarder is not None and forwarder != self.peer_id and not self._fwd_limiter.allow(
                forwarder, now):
            self._count_reject(Reason.RATE_LIMITED)  # RL-3
            return False
        if not self._ads_limiter.allow(key, now):  # RL-1
            self._count_reject(Reason.RATE_LIMITED)
            return False
        verdict, validated = validate_ad(
            data,
            net=self.config.network,
            now_ms=self.now_ms(),
            source=source,
            held_seq=self.table.held_seq,
        )
        if not verdict.ok:
            reason = verdict.reason  # type: ignore[union-attr]
            if isinstance(verdict, Ignore):
                self.metrics.ads_ignored.labels(reason=reason.value).inc()
                self.metrics.reject("caps", reason)
            else:
                self._count_reject(reason)
            event(log, "caps.ad.rejected", logging.DEBUG, reason=reason.value,
                  source=key[:16], detail=getattr(verdict, "detail", ""))
            return False
        assert validated is not None
        if not self.table.admits(validated.peer_id, self._connected):  # TBL-6
            self._count_reject(Reason.RATE_LIMITED)
            return False
        return True

    def _count_reject(self, reason: Reason) -> None:
        self.metrics.ads_rejected.labels(reason=reason.value).inc()
        self.metrics.reject("caps", reason)

    def deliver_caps_message(self, source: bytes | None, data: bytes) -> None:
        """A message that passed the validator arrives on our subscription."""
        # The validator ran on this exact message; re-running it keeps the table's
        # latest-seq-wins rule in one place (a later ad may have landed in between).
        _, validated = validate_ad(
            data,
            net=self.config.network,
            now_ms=self.now_ms(),
            source=source,
            held_seq=self.table.held_seq,
        )
        if validated is None:
            return
        if self.table.update(validated.peer_id, validated.ad, self.now_ms(), self._connected):
            addrs = list(validated.ad.addrs)
            if (validated.peer_id != self.peer_id and addrs
                    and self._saved_addrs.get(validated.peer_id) != addrs):
                # Remember where peers are, so a restarted node finds them again.
                self.store.save_peer(validated.peer_id, addrs, self.now_ms())
                self._saved_addrs[validated.peer_id] = addrs
            self.metrics.ads_accepted.inc()
            self.metrics.table_size.set(len(self.table))
            event(log, "caps.ad.accepted", logging.DEBUG, peer=validated.peer_id,
                  seq=validated.ad.seq)

    def caps_known(self) -> int:
        now = self.now_ms()
        return sum(1 for e in self.table.live(now) if e.peer_id != self.peer_id)

    # -- status for the admin API -------------------------------------------------------

    def status(self) -> dict[str, Any]:
        peers = self.stack.connected_peers() if self.stack else []
        return {
            "peer_id": self.peer_id,
            "network": self.config.network,
            "version": __version__,
            "addrs": self.stack.listen_addrs() if self.stack else [],
            "peers": len(peers),
            "caps_known": self.caps_known(),
            "caps_seq": self.store.counter("caps_seq"),
            "uptime_s": round(self.clock() - self.started_at, 3),
            "metrics": self.metrics_addr,
            "gpus": len(self.hardware.gpus) if self.hardware else 0,
            "counters": self.metrics.snapshot(),
            "jobs": self._job_counts(),
        }

    def _job_counts(self) -> dict[str, Any]:
        if self.market is None:
            return {}
        counts: dict[str, int] = {}
        for j in self.market.jobs.values():
            counts[j.state.value] = counts.get(j.state.value, 0) + 1
        return {"requested": counts, "working": self.market.worker.machine.active,
                "slots": self.config.jobs_concurrency}

    @property
    def extra_api_handlers(self) -> dict[str, Any]:
        from p2pnode.api.jobs import job_handlers

        return job_handlers(self)

    def peers(self) -> list[dict[str, Any]]:
        if not self.stack:
            return []
        out = []
        ps = self.stack.host.get_peerstore()
        for pid in self.stack.host.get_connected_peers():
            try:
                addrs = [str(a) for a in ps.addrs(pid)]
            except Exception:  # the peerstore raises when it holds no address
                addrs = []
            out.append({"peer_id": pid.to_base58(), "addrs": addrs,
                        "has_ad": pid.to_base58() in self.table})
        return sorted(out, key=lambda p: str(p["peer_id"]))

    def caps(self) -> list[dict[str, Any]]:
        now = self.now_ms()
        rows = []
        for e in sorted(self.table.live(now), key=lambda e: e.peer_id):
            body = e.ad.to_body()
            body.pop("net")
            rows.append({"peer_id": e.peer_id, "self": e.peer_id == self.peer_id,
                         "expires_in_s": round((e.ad.expires_at_ms() - now) / 1000, 1),
                         **body})
        return rows

    # -- the shell ----------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        from p2pnode.api.server import serve_admin_api
        from p2pnode.net.host import run_stack
        from p2pnode.net.metrics_http import serve_metrics

        if self.hardware is None:
            self.hardware = await trio.to_thread.run_sync(
                lambda: probe(include_gpus=self.config.caps_probe_gpus))
        async with run_stack(self.identity, self.config.network, list(self.config.listen)) as st:
            self.stack = st
            st.pubsub.set_topic_validator(
                self.topic,
                lambda fwd, msg: self.validate_caps_message(msg.from_id, msg.data,
                                                            fwd.to_base58()),
                False)
            sub = await st.pubsub.subscribe(self.topic)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read_caps, sub)
                    nursery.start_soon(self._bootstrap_loop)
                    nursery.start_soon(self._redial_known_peers)
                    nursery.start_soon(self._publish_loop)
                    nursery.start_soon(self._housekeeping_loop)
                    nursery.start_soon(self._reprobe_loop)
                    self.market = self._build_market(st)
                    await nursery.start(self.market.run)
                    self.api_addr = await nursery.start(serve_admin_api, self)
                    if self.config.metrics_listen:
                        self.metrics_addr = await nursery.start(
                            serve_metrics, self.metrics, self.config.metrics_listen)
                    event(log, "node.started", peer_id=self.peer_id, net=self.config.network,
                          addrs=st.listen_addrs(), api=self.api_addr, metrics=self.metrics_addr)
                    task_status.started(self)
            finally:
                self.stack = None
                self.store.close()
                event(log, "node.stopped", peer_id=self.peer_id)

    def _build_market(self, st: Any) -> Any:
        """Wire the job market: its machines behind typed ports (spec 04)."""
        from p2pnode.blobs.store import BlobStore
        from p2pnode.caps.table import MAX_CLOCK_SKEW_MS
        from p2pnode.jobs.executors.base import Limits
        from p2pnode.jobs.matching import Capacity
        from p2pnode.jobs.requester import Candidate
        from p2pnode.jobs.worker import Worker
        from p2pnode.net.blob_protocol import register_blob_protocol
        from p2pnode.net.dht import register_job_records
        from p2pnode.net.transport import Libp2pTransport
        from p2pnode.services.clock import LocalClock
        from p2pnode.services.jobs import JobMetrics, JobsService
        from p2pnode.services.requester import RequesterService, RequesterSettings
        from p2pnode.services.worker import WorkerService, WorkerSettings

        cfg, net = self.config, self.config.network
        clock = LocalClock(self.clock)
        rng = random.Random()

        def reject(reason: Reason) -> None:
            self.metrics.reject("job", reason)

        transport = Libp2pTransport(st, net, reject)
        blobs = BlobStore(self.home / "blobs", self.home / "blobs.db",
                          max_blob_size=cfg.jobs_max_blob_bytes)
        self.blobs = blobs
        register_job_records(st.dht, net, self.now_ms, reject)
        register_blob_protocol(st.host, blobs, net,
                               lambda r: self.metrics.reject("blob", r))
        metrics = JobMetrics(self.metrics.registry)

        def table() -> list[Candidate]:
            return [Candidate(e.peer_id, e.ad.signer, Capacity.of_ad(e.ad))
                    for e in self.table.live(self.now_ms()) if e.peer_id != self.peer_id]

        def capacity_of(peer: str) -> Capacity | None:
            e = self.table.get(peer)
            if e is None or e.ad.expires_at_ms() <= self.now_ms():
                return None
            return Capacity.of_ad(e.ad)

        def addrs_of(peer: str) -> list[str]:
            e = self.table.get(peer)
            if e is not None and e.ad.addrs:
                return list(e.ad.addrs)
            # After a restart the table is empty until the peer's next ad, but a resumed
            # verification (XCH-10) must still reach its worker at once (VER-1 re-dials it):
            # without this its fetches fail back to back and the worker is blamed.
            return self.store.peer_addrs(peer)

        hw = self.hardware
        assert hw is not None
        limits = Limits(
            max_input_bytes=cfg.jobs_max_blob_bytes, max_output_bytes=cfg.jobs_max_blob_bytes,
            wall_time_s=cfg.jobs_wall_time_s, wasm_fuel=cfg.jobs_wasm_fuel,
            wasm_memory_bytes=cfg.jobs_wasm_memory_bytes, matmul_max_n=cfg.jobs_matmul_max_n)
        me = Capacity(kinds=frozenset(cfg.caps_kinds), cores=hw.cores, mem=hw.mem,
                      gpus=len(hw.gpus), gpu_mem=max((g.mem for g in hw.gpus), default=0),
                      prices=dict(cfg.caps_price))
        requester = RequesterService(
            identity=self.identity, transport=transport, clock=clock, rng=rng,
            store=self.store, blobs=blobs,
            settings=RequesterSettings(net=net, offers=cfg.jobs_offer,
                                       max_blob_bytes=cfg.jobs_max_blob_bytes,
                                       max_price=cfg.jobs_max_price, lease_s=cfg.jobs_lease_s,
                                       deadline_s=cfg.jobs_deadline_s),
            table=table, capacity_of=capacity_of, addrs_of=addrs_of, count=metrics.count,
            on_reject=reject)
        worker = WorkerService(
            identity=self.identity,
            machine=Worker(net, self.identity.public_key, me, cfg.jobs_concurrency,
                           wall_time_s=cfg.jobs_wall_time_s),
            transport=transport, clock=clock, rng=rng, store=self.store, blobs=blobs,
            settings=WorkerSettings(net=net, device=cfg.jobs_device,
                                    discovery_interval_s=cfg.jobs_discovery_interval_s,
                                    limits=limits),
            count=metrics.count, on_reject=reject,
            created_ok=lambda sj, wall: sj.spec.created <= wall + MAX_CLOCK_SKEW_MS)
        return JobsService(net=net, transport=transport, requester=requester, worker=worker,
                           metrics=metrics, on_reject=reject)

    async def _read_caps(self, sub: Any) -> None:
        while True:
            msg = await sub.get()
            self.deliver_caps_message(msg.from_id, msg.data)

    async def _publish(self) -> None:
        ad = self.make_ad()
        data = ad.encode(self.identity)
        self._last_publish = self.clock()
        await self.stack.pubsub.publish(self.topic, data)
        self.metrics.ads_published.inc()
        event(log, "caps.ad.published", logging.DEBUG, seq=ad.seq)

    async def _publish_loop(self) -> None:
        interval = self.config.caps_interval_s
        while True:
            await self._publish()
            self._publish_now = trio.Event()
            delay = interval * random.uniform(0.9, 1.1)
            with trio.move_on_after(delay):
                await self._publish_now.wait()
                # Debounce: several peers joining at once cost one ad.
                gap = self._last_publish + MIN_PUBLISH_GAP_S - self.clock()
                if gap > 0:
                    await trio.sleep(gap)

    async def _redial_known_peers(self) -> None:
        """At start, dial the peers seen in the last day (their last advertised address)."""
        from p2pnode.net.peering import dial

        known = self.store.known_peers(self.now_ms() - KNOWN_PEER_MAX_AGE_MS, TARGET_PEERS)

        async def one(peer_id: str, addr: str) -> None:
            ok, err = await dial(self.stack, f"{addr}/p2p/{peer_id}", timeout=5)
            event(log, "peer.redial", logging.DEBUG, peer=peer_id, ok=ok, error=err)

        async with trio.open_nursery() as nursery:
            for peer_id, addrs in known:
                if addrs and peer_id != self.peer_id:
                    nursery.start_soon(one, peer_id, addrs[0])

    async def _bootstrap_loop(self) -> None:
        """Dial bootstrap peers while none is connected, with exponential backoff."""
        if not self.config.bootstrap:
            return
        from p2pnode.net.peering import dial

        backoff = 0.5
        while True:
            connected = set(self.stack.connected_peers())
            for addr in self.config.bootstrap:
                if addr.rsplit("/p2p/", 1)[-1] in connected or self.peer_id in addr:
                    continue
                ok, err = await dial(self.stack, addr)
                event(log, "bootstrap.dial", logging.INFO if ok else logging.WARNING,
                      addr=addr, ok=ok, error=err)
            if set(self.stack.connected_peers()) & {
                a.rsplit("/p2p/", 1)[-1] for a in self.config.bootstrap
            }:
                backoff = 0.5
                await trio.sleep(5)
            else:
                await trio.sleep(backoff * random.uniform(0.8, 1.2))
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
        from p2pnode.net.peering import dial, reannounce_subscriptions, repair_pubsub_peers

        ticks = 0
        while True:
            await trio.sleep(1.0)
            now = self.now_ms()
            for p in self.table.expire(now):
                event(log, "caps.ad.expired", logging.DEBUG, peer=p)
            self.metrics.table_size.set(len(self.table))
            connected = set(self.stack.connected_peers())
            self.metrics.peers.set(len(connected))
            if await repair_pubsub_peers(self.stack):
                event(log, "pubsub.repaired", logging.DEBUG)
            ticks += 1
            if ticks % RESUBSCRIBE_TICKS == 0:
                await reannounce_subscriptions(self.stack)
            # A new subscriber to the caps topic has missed our last ad: send a fresh one.
            # A peer that restarted keeps its PeerID but comes with a new pubsub stream.
            ps = self.stack.pubsub
            topic_peers = {p.to_base58(): id(ps.peers.get(p))
                           for p in ps.peer_topics.get(self.topic, set())}
            if any(self._known_topic_peers.get(p) != s for p, s in topic_peers.items()):
                self._publish_now.set()
            self._known_topic_peers = topic_peers
            # Widen the mesh beyond the bootstrap peers from the addresses in ads.
            if len(connected) < TARGET_PEERS:
                for e in list(self.table.live(now)):
                    if e.peer_id == self.peer_id or e.peer_id in connected:
                        continue
                    if e.peer_id in self._dialing or not e.ad.addrs:
                        continue
                    self._dialing.add(e.peer_id)
                    try:
                        await dial(self.stack, f"{e.ad.addrs[0]}/p2p/{e.peer_id}", timeout=3)
                    finally:
                        self._dialing.discard(e.peer_id)
                    break
