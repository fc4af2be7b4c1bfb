"""The capability service dials addresses from ads only as the address policy allows, at the
dial budget's pace, in its own task (ADDR-1 to ADDR-5), whatever ads a hostile network
fills its table with. A fake Gossip port records the dials; virtual time."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import trio
import trio.testing

from p2pnode.addrpolicy import DIAL_BURST, DIAL_CONCURRENCY, DIAL_RATE_PER_S
from p2pnode.caps.probe import Hardware
from p2pnode.caps.table import CapTable
from p2pnode.config import Config
from p2pnode.identity import Identity
from p2pnode.metrics import Metrics
from p2pnode.ports import Subscription, TopicValidator
from p2pnode.services.caps import TARGET_PEERS, CapsService
from p2pnode.store import NodeStore
from p2pnode.wire.reasons import Reason
from tests.caps.ads import AD, NOW_MS

DIAL_TAKES_S = 10.0  # a dial to an address that never answers
RUN_S = 30.0
HOSTILE_ADS = 40


class FakeGossip:
    """No network: connected to nobody, every dial hangs, then fails."""

    def __init__(self, peer_id: str) -> None:
        self.peer_id = peer_id
        self.dialled: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    def listen_addrs(self) -> list[str]:
        return []

    def connected_peers(self) -> list[str]:
        return []

    def set_validator(self, topic: str, validate: TopicValidator) -> None:
        pass

    async def subscribe(self, topic: str) -> Subscription:
        raise NotImplementedError

    async def publish(self, topic: str, data: bytes) -> None:
        pass

    def topic_peers(self, topic: str) -> dict[str, int]:
        return {}

    def mesh_peers(self, topic: str) -> int:
        return 0

    def serve_held_ads(self, answer: Callable[[str], list[bytes]],
                       on_refused: Callable[[], None]) -> None:
        pass

    async def pull_held_ads(self, peer: str) -> tuple[list[bytes], Reason | None]:
        return [], None

    async def dial(self, addr: str, timeout: float) -> tuple[bool, str]:
        self.dialled.append(addr)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await trio.sleep(min(timeout, DIAL_TAKES_S))
        finally:
            self.in_flight -= 1
        return False, "timeout"

    async def upkeep(self, resubscribe: bool) -> int:
        return 0

    def peer_addrs(self) -> dict[str, list[str]]:
        return {}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NodeStore]:
    s = NodeStore(tmp_path / "state.db")
    yield s
    s.close()


def service(store: NodeStore, private_addrs: str) -> tuple[CapsService, FakeGossip]:
    me = Identity.generate()
    gossip = FakeGossip(me.peer_id)
    caps = CapsService(
        config=Config(network="testnet", net_private_addrs=private_addrs),
        identity=me, store=store, metrics=Metrics(), table=CapTable(),
        clock=lambda: NOW_MS / 1000 + trio.current_time(),
        hardware=Hardware(cores=1, threads=1, arch="x86_64", mem=1 << 30, gpus=()),
        gossip=gossip, topic="/p2pnode/testnet/caps/1", rng=random.Random(7))
    return caps, gossip


def fill_table(caps: CapsService) -> list[str]:
    """HOSTILE_ADS ads whose addresses point at our LAN and loopback, or are garbage, and
    a few with one public address each; returns the public addresses."""
    public = []
    for i in range(HOSTILE_ADS):
        peer = Identity.generate().peer_id
        addrs = [f"/ip4/10.0.{i}.1/tcp/22", "/ip4/127.0.0.1/tcp/6379", "/dns4/intranet/tcp/80",
                 "/ip4/169.254.169.254/tcp/80", "/ip4/224.0.0.1/tcp/1", "/ip4/1.2.3.4/udp/1"]
        if i % 4 == 0:
            addrs.append(f"/ip4/8.8.{i}.8/tcp/4001")
            public.append(f"/ip4/8.8.{i}.8/tcp/4001/p2p/{peer}")
        assert caps.table.update(peer, replace(AD, addrs=tuple(addrs)), NOW_MS)
    return public


async def test_only_public_addresses_are_dialled_at_a_bounded_rate(
        store: NodeStore, autojump_clock: trio.testing.MockClock,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="p2pnode.caps")
    caps, gossip = service(store, "deny")
    public = fill_table(caps)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(caps._dial_loop)
        await trio.sleep(RUN_S)
        nursery.cancel_scope.cancel()
    assert gossip.dialled, "nothing dialled"
    assert set(gossip.dialled) <= set(public)  # no private, malformed or non-TCP address
    assert gossip.most_in_flight <= min(DIAL_CONCURRENCY, TARGET_PEERS)
    assert len(gossip.dialled) <= DIAL_BURST + DIAL_RATE_PER_S * RUN_S
    registry = caps.metrics.registry
    failed = registry.get_sample_value("p2pnode_ad_dials_total", {"result": "failed"})
    assert failed is not None and 0 < failed <= len(gossip.dialled)  # some still in flight
    assert (registry.get_sample_value("p2pnode_ad_dials_deferred_total") or 0) > 0
    assert "peer.dial.deferred" in caplog.text


async def test_a_devnet_node_dials_private_addresses_but_never_multicast(
        store: NodeStore, autojump_clock: trio.testing.MockClock) -> None:
    caps, gossip = service(store, "allow")
    fill_table(caps)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(caps._dial_loop)
        await trio.sleep(RUN_S)
        nursery.cancel_scope.cancel()
    assert gossip.dialled
    # The first address of an ad that the policy allows: the 10.0.i.1 one.
    assert all(a.startswith("/ip4/10.0.") for a in gossip.dialled)
    assert len(gossip.dialled) <= DIAL_BURST + DIAL_RATE_PER_S * RUN_S


class MeshGossip(FakeGossip):
    """Records publications; the test sets how many mesh peers and topic peers there are."""

    def __init__(self, peer_id: str) -> None:
        super().__init__(peer_id)
        self.mesh = 0
        self.topic = {"peer-a": 1}
        self.published = 0

    async def publish(self, topic: str, data: bytes) -> None:
        self.published += 1

    def mesh_peers(self, topic: str) -> int:
        return self.mesh

    def topic_peers(self, topic: str) -> dict[str, int]:
        return dict(self.topic)


async def test_pub3_republishes_only_an_ad_that_reached_no_mesh_peer(
        store: NodeStore, autojump_clock: trio.testing.MockClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def inline(fn: Callable[[], object]) -> object:
        return fn()

    # An ad is made in a worker thread (its seq is an fsync'd write); run it inline so
    # that virtual time does not run on while the thread works.
    monkeypatch.setattr(trio.to_thread, "run_sync", inline)
    me = Identity.generate()
    gossip = MeshGossip(me.peer_id)
    caps = CapsService(
        config=Config(network="testnet", caps_interval_s=600.0, caps_ttl_s=1800),
        identity=me, store=store, metrics=Metrics(), table=CapTable(),
        clock=lambda: NOW_MS / 1000 + trio.current_time(),
        hardware=Hardware(cores=1, threads=1, arch="x86_64", mem=1 << 30, gpus=()),
        gossip=gossip, topic="/p2pnode/testnet/caps/1", rng=random.Random(7))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(caps._publish_loop)
        nursery.start_soon(caps._housekeeping_loop)
        await trio.sleep(5)
        assert gossip.published == 1  # PUB-1, into an empty mesh; nothing since
        gossip.mesh = 2
        await trio.sleep(5)
        assert gossip.published == 2  # PUB-3: the mesh has a peer now
        for i in range(5):  # peers join and rejoin: the held-ads exchange serves them
            gossip.topic = {**gossip.topic, f"peer-{i}": i + 2, "peer-a": 100 + i}
            await trio.sleep(3)
        assert gossip.published == 2
        nursery.cancel_scope.cancel()
