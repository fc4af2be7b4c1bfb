"""The Node: wiring. It builds the services — capabilities, the job market, the admin API
and metrics — behind their typed ports, and runs them in one trio nursery; shutdown is
cancelling it. No protocol rule lives here.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from p2pnode.addrpolicy import learned_addr_check, private_addrs_allowed
from p2pnode.caps.probe import Hardware, probe
from p2pnode.caps.table import CapTable
from p2pnode.config import LEDGER_DB, STATE_DB, Config
from p2pnode.identity import Identity
from p2pnode.log import event
from p2pnode.metrics import Metrics
from p2pnode.peers import BanList, ConnLimits
from p2pnode.store import NodeStore
from p2pnode.wire.envelope import SignatureCache
from p2pnode.wire.reasons import Reason

if TYPE_CHECKING:
    from libp2p.kad_dht.kad_dht import KadDHT

    from p2pnode.blobs.store import BlobStore
    from p2pnode.net.host import NetStack
    from p2pnode.net.kad import KadMetrics, KadSettings
    from p2pnode.services.anchoring import AnchorService
    from p2pnode.services.caps import CapsService
    from p2pnode.services.challenge import ChallengeService
    from p2pnode.services.fraud import FraudService
    from p2pnode.services.jobs import JobsService
    from p2pnode.services.ledger import LedgerService

log = logging.getLogger("p2pnode.node")


class Node:
    def __init__(
        self,
        home: Path,
        config: Config,
        identity: Identity,
        *,
        clock: Callable[[], float] = time.time,
        hardware: Hardware | None = None,
        kad: KadSettings | None = None,
    ) -> None:
        self.home = home
        self.config = config
        self.identity = identity
        self.clock = clock
        self.metrics = Metrics()
        self.kad = kad
        self.kad_metrics: KadMetrics | None = None  # once running
        self.table = CapTable()
        self.store = NodeStore(home / STATE_DB)
        self.hardware = hardware
        self.stack: NetStack | None = None
        self.api_addr: str | None = None
        self.metrics_addr: str | None = None
        self.started_at = clock()
        self.caps: CapsService | None = None  # once running
        self.market: JobsService | None = None  # once running
        self.fraud: FraudService | None = None  # once running
        self.challenge: ChallengeService | None = None  # once running
        self.ledger: LedgerService | None = None  # once running
        self.anchoring: AnchorService | None = None  # once running, with a chain
        self.blobs: BlobStore | None = None
        # One record of checked signatures for every channel (spec 01 ENV-12).
        self.signatures = SignatureCache()
        self.metrics.watch_signatures(self.signatures)

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    @property
    def topic(self) -> str:
        from p2pnode.net.host import caps_topic

        return caps_topic(self.config.network)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def caps_known(self) -> int:
        now = self.now_ms()
        return sum(1 for e in self.table.live(now) if e.peer_id != self.peer_id)

    # -- views for the admin API (p2pnode/api/views.py) --------------------------------

    def status(self) -> dict[str, Any]:
        from p2pnode.api.views import node_status

        return node_status(self)

    def peers(self) -> list[dict[str, Any]]:
        from p2pnode.api.views import peer_rows

        return peer_rows(self)

    def caps_rows(self) -> list[dict[str, Any]]:
        from p2pnode.api.views import caps_rows

        now = self.now_ms()
        rows = caps_rows(self.table, self.peer_id, now)
        signers = {e.peer_id: e.ad.signer for e in self.table.live(now)}
        ch = self.challenge
        for r in rows:
            # CHL-5: our own challenge's word, and how many attestations others gossiped.
            signer = signers[r["peer_id"]]
            ok, failed = ch.attests.counts(signer, ch.wall_ms()) if ch else (0, 0)
            r["attested"] = "self" if r["self"] else (ch.status(signer) if ch else "never")
            r["attestations"] = {"ok": ok, "failed": failed}
        return rows

    @property
    def extra_api_handlers(self) -> dict[str, Any]:
        from p2pnode.api.jobs import job_handlers
        from p2pnode.api.ledger import chain_handlers, ledger_handlers

        return {**job_handlers(self), **ledger_handlers(self), **chain_handlers(self)}

    def _table_changed(self) -> None:
        if self.market is not None:
            self.market.requester.wake()

    # -- wiring ---------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        from p2pnode.api.server import serve_admin_api
        from p2pnode.net.gossip import Libp2pGossip
        from p2pnode.net.host import run_stack
        from p2pnode.net.metrics_http import serve_metrics
        from p2pnode.services.caps import CapsService

        if self.hardware is None:
            self.hardware = await trio.to_thread.run_sync(
                lambda: probe(include_gpus=self.config.caps_probe_gpus))
        cfg = self.config
        allow_private = private_addrs_allowed(cfg.net_private_addrs, cfg.listen, cfg.bootstrap)
        limits = ConnLimits(max_connections=cfg.peers_max_connections,
                            max_per_ip=cfg.peers_max_connections_per_ip,
                            limit_loopback=cfg.peers_limit_loopback)
        async with run_stack(self.identity, cfg.network, list(cfg.listen), limits=limits,
                             bans=BanList(ban_s=cfg.peers_ban_s),
                             registry=self.metrics.registry,
                             configure_dht=self._harden_dht,
                             addr_check=learned_addr_check(allow_private, cfg.bootstrap)
                             ) as st:
            self.stack = st
            assert st.guard is not None
            for addr in cfg.bootstrap:  # PEER-8
                st.guard.protect(addr.rsplit("/p2p/", 1)[-1], "bootstrap")
            self.caps = CapsService(
                config=self.config, identity=self.identity, store=self.store,
                metrics=self.metrics, table=self.table, clock=self.clock,
                hardware=self.hardware, gossip=Libp2pGossip(st), topic=self.topic,
                rng=random.Random(), on_change=self._table_changed,
                verified=self.signatures)
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(self.caps.run)
                    self.market = self._build_market(st)
                    st.guard.add_protected(self._lease_peers)
                    await nursery.start(self.market.run)
                    self.fraud = self._build_fraud(st, self.market)
                    await nursery.start(self.fraud.run)
                    self.challenge = self._build_challenge(st, self.market)
                    await nursery.start(self.challenge.run)
                    self.ledger = self._build_ledger(st, self.market, self.fraud)
                    await nursery.start(self.ledger.run)
                    await self.ledger.add_own(self._own_credits(self.market))
                    if self.config.chain_backend != "none":
                        self.anchoring = self._build_anchoring(st, self.ledger)
                        if self.anchoring.announcer is not None:
                            await nursery.start(self.anchoring.announcer.run)
                        await nursery.start(self.anchoring.run)
                    # The admin API comes up last: once it answers (the launcher and the
                    # CLI wait for it), every other part, the metrics endpoint included,
                    # is up and its status complete.
                    if self.config.metrics_listen:
                        self.metrics_addr = await nursery.start(
                            serve_metrics, self.metrics, self.config.metrics_listen)
                    self.api_addr = await nursery.start(serve_admin_api, self)
                    event(log, "node.started", peer_id=self.peer_id, net=self.config.network,
                          addrs=st.listen_addrs(), api=self.api_addr, metrics=self.metrics_addr)
                    task_status.started(self)
            finally:
                self.stack = None
                self.store.close()
                if self.ledger is not None:
                    self.ledger.store.close()
                event(log, "node.stopped", peer_id=self.peer_id)

    def _lease_peers(self) -> set[str]:
        """Peers we hold a live lease (or a claim) with, either way round (PEER-8)."""
        from p2pnode.identity import peer_id_str
        from p2pnode.jobs.market import LeaseState
        from p2pnode.jobs.worker import OPEN

        market = self.market
        if market is None:
            return set()
        live = (LeaseState.ACTIVE, LeaseState.VERIFYING)
        keys = {lease.worker for job in market.requester.jobs.values()
                for lease in job.leases.values() if lease.state in live}
        keys |= {w.job.requester for w in market.worker.machine.work.values()
                 if w.state in OPEN}
        return {peer_id_str(k) for k in keys}

    def _harden_dht(self, dht: KadDHT) -> None:
        """The DHT and the libp2p service protocols within their limits (spec 03 §5.2,
        §5.3); runs before the host listens."""
        from p2pnode.net.dht import harden
        from p2pnode.net.kad import KadMetrics, KadSettings, guard_service_protocols

        if self.kad_metrics is None:
            self.kad_metrics = KadMetrics(self.metrics.registry)
        settings = self.kad or KadSettings()
        harden(dht, self.config.network, self.clock, self.kad_metrics,
               lambda r: self.metrics.reject("job", r), settings, self.signatures)
        guard_service_protocols(dht.host, self.kad_metrics, settings.service_streams,
                                settings.service_idle_s)

    def _build_fraud(self, st: NetStack, market: JobsService) -> FraudService:
        """The fraud topic (spec 06 §3): proofs validated here bar cheaters from our leases,
        and the proofs our requester makes are published there."""
        from p2pnode.net.gossip import Libp2pGossip
        from p2pnode.net.host import fraud_topic
        from p2pnode.proofs.bars import BAR_MS
        from p2pnode.services.fraud import FraudService

        req = market.requester
        fraud = FraudService(net=self.config.network, gossip=Libp2pGossip(st),
                             topic=fraud_topic(self.config.network),
                             count=market.metrics.count,
                             reject=lambda r: self.metrics.reject("fraud", r),
                             wall_ms=req.clock.wall_ms, clock=self.clock, on_fraud=req.bar,
                             verified=self.signatures, bar_ms=self.config.jobs_bar_s * 1000)

        async def report(data: bytes, cheater: bytes, job: bytes, result_ts: int) -> None:
            await fraud.publish(data, cheater, job, result_ts + BAR_MS)

        req.report_fraud = report
        return fraud

    def _build_ledger(self, st: NetStack, market: JobsService,
                      fraud: FraudService) -> LedgerService:
        """The reward ledger (spec 07): our receipts and every fraud proof taken go in."""
        from p2pnode.ledger.state import Params
        from p2pnode.ledger.store import LedgerStore
        from p2pnode.ledger.transfer import MAX_FRAME
        from p2pnode.net.gossip import Libp2pGossip
        from p2pnode.net.host import ledger_topic
        from p2pnode.net.ledger_sync import Libp2pSyncNet
        from p2pnode.services.ledger import LedgerMetrics, LedgerService

        cfg = self.config

        def reject(r: Reason) -> None:
            self.metrics.reject("ledger", r)

        params = Params(epoch_len_ms=cfg.ledger_epoch_len_s * 1000,
                        grace_ms=cfg.ledger_grace_s * 1000)
        ledger = LedgerService(
            net=cfg.network, params=params, store=LedgerStore(self.home / LEDGER_DB, params),
            gossip=Libp2pGossip(st), topic=ledger_topic(cfg.network),
            sync=Libp2pSyncNet(st.host, cfg.network, MAX_FRAME, reject),
            wall_ms=market.requester.clock.wall_ms, clock=self.clock, rng=random.Random(),
            metrics=LedgerMetrics(self.metrics.registry), reject=reject,
            verified=self.signatures, sync_interval_s=cfg.ledger_sync_interval_s)
        market.requester.on_receipt = ledger.add_credit
        fraud.on_proof = ledger.queue_fraud
        return ledger

    def _build_anchoring(self, st: NetStack, ledger: LedgerService) -> AnchorService:
        """Anchoring on the configured chain (spec 08, draft), with the anchors topic."""
        from p2pnode.chain.base import Schedule
        from p2pnode.chain.devchain import DevChain
        from p2pnode.net.gossip import Libp2pGossip
        from p2pnode.net.host import anchors_topic
        from p2pnode.services.anchoring import AnchorMetrics, AnchorService, Announcer

        cfg = self.config
        me = self.identity.public_key
        metrics = AnchorMetrics(self.metrics.registry)
        announcer = Announcer(net=cfg.network, identity=self.identity, gossip=Libp2pGossip(st),
                              topic=anchors_topic(cfg.network), ledger_params=ledger.params,
                              wall_ms=ledger.wall_ms, clock=self.clock,
                              reject=lambda r: self.metrics.reject("anchors", r),
                              verified=self.signatures)
        if cfg.chain_backend == "evm":
            from eth_account import Account
            from web3 import Web3

            from p2pnode.chain.binding import payout_key
            from p2pnode.chain.evm import EvmChain

            key_file = Path(cfg.chain_payout_key) if cfg.chain_payout_key else None
            sender = Account.from_key(payout_key(self.home, key_file))
            evm = EvmChain(Web3(Web3.HTTPProvider(cfg.chain_rpc_url)), cfg.chain_contract,
                           sender)
            return AnchorService(chain=evm, ledger=ledger, account=me, payee=evm.sender,
                                 metrics=metrics, wall_s=self.clock,
                                 on_mismatch=lambda e: trio.from_thread.run_sync(
                                     ledger.request_resync), announcer=announcer)
        path = Path(cfg.chain_devchain_path) if cfg.chain_devchain_path else \
            self.home / "chain.db"
        schedule = Schedule(cfg.ledger_epoch_len_s, cfg.ledger_grace_s, cfg.chain_fallback_s)
        chain = DevChain.create(path, self.identity, [me.hex()], schedule)
        return AnchorService(chain=chain, ledger=ledger, account=me, payee=me.hex(),
                             metrics=metrics, wall_s=self.clock,
                             on_mismatch=lambda e: trio.from_thread.run_sync(
                                 ledger.request_resync), announcer=announcer)

    def _own_credits(self, market: JobsService) -> list[tuple[bytes, bytes]]:
        """Our receipts of accepted leases, with their jobs (for the ledger at start)."""
        from p2pnode.jobs.market import LeaseState
        from p2pnode.proofs.receipts import open_receipt

        out = []
        for job in market.requester.jobs.values():
            accepted = {n for n, lease in job.leases.items()
                        if lease.state is LeaseState.ACCEPTED}
            for raw in self.store.receipts(job.id) if accepted else ():
                if open_receipt(raw, net=self.config.network).receipt.lease in accepted:
                    out.append((raw, job.raw))
        return out

    def _build_challenge(self, st: NetStack, market: JobsService) -> ChallengeService:
        """Capability challenges and attestations (spec 06 §6)."""
        from p2pnode.net.gossip import Libp2pGossip
        from p2pnode.net.host import attest_topic
        from p2pnode.services.challenge import ChallengeService

        return ChallengeService(
            net=self.config.network, identity=self.identity, gossip=Libp2pGossip(st),
            topic=attest_topic(self.config.network), table=self.table,
            requester=market.requester, count=market.metrics.count,
            reject=lambda r: self.metrics.reject("attest", r),
            interval_s=self.config.caps_challenge_interval_s, verified=self.signatures)

    def _build_market(self, st: NetStack) -> JobsService:
        """Wire the job market: its machines behind typed ports (spec 04)."""
        from p2pnode.addrpolicy import filter_ad_addrs
        from p2pnode.blobs.store import BlobStore
        from p2pnode.jobs.executors.base import Limits
        from p2pnode.jobs.matching import Capacity
        from p2pnode.jobs.requester import Candidate
        from p2pnode.jobs.worker import Worker
        from p2pnode.net.blob_protocol import register_blob_protocol
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
        metrics = JobMetrics(self.metrics.registry)
        blobs = BlobStore(self.home / "blobs", self.home / "blobs.db",
                          max_blob_size=cfg.jobs_max_blob_bytes,
                          quota_bytes=cfg.blobs_quota_bytes, retention_s=cfg.blobs_retention_s,
                          clock=self.clock, on_evict=metrics.blobs_evicted,
                          on_refuse=metrics.blob_put_refused)
        self.blobs = blobs
        register_blob_protocol(st.host, blobs, net,
                               lambda r: self.metrics.reject("blob", r))

        def table() -> list[Candidate]:
            ch = self.challenge  # CHL-6: our own attestations order the offers
            return [Candidate(e.peer_id, e.ad.signer, Capacity.of_ad(e.ad),
                              ch.rank(e.ad.signer) if ch is not None else 1)
                    for e in self.table.live(self.now_ms()) if e.peer_id != self.peer_id]

        def capacity_of(peer: str) -> Capacity | None:
            e = self.table.get(peer)
            if e is None or e.ad.expires_at_ms() <= self.now_ms():
                return None
            return Capacity.of_ad(e.ad)

        allow_private = private_addrs_allowed(cfg.net_private_addrs, cfg.listen, cfg.bootstrap)

        def addrs_of(peer: str) -> list[str]:
            # Addresses from ads, so only those the address policy allows (ADDR-1).
            e = self.table.get(peer)
            if e is not None and e.ad.addrs:
                return filter_ad_addrs(e.ad.addrs, allow_private).dialable
            # After a restart the table is empty until the peer's next ad, but a resumed
            # verification (XCH-10) must still reach its worker at once (VER-1 re-dials it):
            # without this its fetches fail back to back and the worker is blamed.
            return filter_ad_addrs(self.store.peer_addrs(peer), allow_private).dialable

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
                                       deadline_s=cfg.jobs_deadline_s,
                                       retention_ms=cfg.jobs_retention_s * 1000),
            table=table, capacity_of=capacity_of, addrs_of=addrs_of, count=metrics.count,
            on_reject=reject)
        worker = WorkerService(
            identity=self.identity,
            machine=Worker(net, self.identity.public_key, me, cfg.jobs_concurrency,
                           wall_time_s=cfg.jobs_wall_time_s,
                           retention_ms=cfg.jobs_retention_s * 1000),
            transport=transport, clock=clock, rng=rng, store=self.store, blobs=blobs,
            settings=WorkerSettings(net=net, device=cfg.jobs_device,
                                    discovery_interval_s=cfg.jobs_discovery_interval_s,
                                    limits=limits, cheat=cfg.jobs_cheat),
            count=metrics.count, on_reject=reject, verified=self.signatures)
        return JobsService(net=net, transport=transport, requester=requester, worker=worker,
                           metrics=metrics, on_reject=reject, verified=self.signatures,
                           retention_s=cfg.jobs_retention_s)
