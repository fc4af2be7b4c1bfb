"""The connection manager's shell (spec 03 §5.5) over a fake host: what it closes, what
it bans, and that pubsub's blacklist follows the ban list."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from libp2p.peer.id import ID
from prometheus_client import CollectorRegistry

from p2pnode.identity import Identity
from p2pnode.net.connmgr import PeerGuard, PeerMetrics
from p2pnode.net.host import libp2p_key_pair
from p2pnode.net.scoring import Scorer
from p2pnode.peers import BanList, ConnLimits

CAPS = "/p2pnode/devnet/caps/1"


def new_peer() -> str:
    return ID.from_pubkey(libp2p_key_pair(Identity.generate()).public_key).to_base58()


@dataclass
class Muxed:
    peer_id: ID
    ip: str

    def get_remote_address(self) -> tuple[str, int]:
        return (self.ip, 4001)


@dataclass
class Conn:
    muxed_conn: Muxed


@dataclass
class Host:
    conns: dict[str, Conn] = field(default_factory=dict)
    closed: list[str] = field(default_factory=list)

    def connect(self, peer: str, ip: str = "127.0.0.1") -> None:
        self.conns[peer] = Conn(Muxed(ID.from_base58(peer), ip))

    def get_network(self) -> Host:
        return self

    def get_connections(self) -> list[Conn]:
        return list(self.conns.values())

    async def disconnect(self, peer: ID) -> None:
        self.closed.append(peer.to_base58())
        self.conns.pop(peer.to_base58(), None)


@dataclass
class Pubsub:
    blacklisted_peers: set[ID] = field(default_factory=set)

    def add_to_blacklist(self, peer: ID) -> None:
        self.blacklisted_peers.add(peer)

    def remove_from_blacklist(self, peer: ID) -> None:
        self.blacklisted_peers.discard(peer)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def guard(limits: ConnLimits, bans: BanList | None = None) -> tuple[PeerGuard, Host, Pubsub,
                                                                  Clock, CollectorRegistry]:
    host, pubsub, clock, registry = Host(), Pubsub(), Clock(), CollectorRegistry()
    g = PeerGuard(host, pubsub, Scorer(), limits=limits,  # type: ignore[arg-type]
                  bans=BanList(ban_s=60) if bans is None else bans,
                  metrics=PeerMetrics(registry), clock=clock)
    return g, host, pubsub, clock, registry


def closed(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("p2pnode_connections_closed_total",
                                     {"reason": reason}) or 0.0


async def test_over_the_limit_the_newest_unprotected_go() -> None:
    g, host, _, clock, registry = guard(ConnLimits(max_connections=2))
    boot, old, new, newer = (new_peer() for _ in range(4))
    g.protect(boot, "bootstrap")
    for p in (boot, old, new, newer):
        host.connect(p)
        await g.sweep()
        clock.now += 1
    assert host.closed == [new, newer]
    assert set(host.conns) == {boot, old}
    assert closed(registry, "over_limit") == 2
    assert g.usage()["connections"] == {"held": 2, "cap": 2}


async def test_a_peer_that_keeps_sending_invalid_messages_is_banned_closed_and_refused() -> None:
    g, host, pubsub, clock, registry = guard(ConnLimits())
    bad, good = new_peer(), new_peer()
    host.connect(bad)
    host.connect(good)
    g.protect(bad, "bootstrap")  # protection does not outweigh a ban
    for _ in range(9):
        g.on_invalid(bad, CAPS)
    assert g.is_banned(bad) and ID.from_base58(bad) in pubsub.blacklisted_peers
    assert registry.get_sample_value("p2pnode_peers_banned_total",
                                     {"reason": "graylisted"}) == 1
    await g.sweep()
    assert host.closed == [bad] and closed(registry, "banned") == 1
    assert g.refuse_dial(bad) and not g.refuse_dial(good)
    # It comes back: closed again at once.
    host.connect(bad)
    await g.sweep()
    assert host.closed == [bad, bad]
    # The ban ends: pubsub hears it again, and it may connect (with a clean score, as
    # py-libp2p forgets a peer's score when it disconnects).
    clock.now += 61
    g.scorer.remove_peer(ID.from_base58(bad))
    await g.sweep()
    assert not g.is_banned(bad) and not pubsub.blacklisted_peers
    host.connect(bad)
    await g.sweep()
    assert bad in host.conns


async def test_a_ban_the_full_ban_list_forgot_leaves_pubsubs_blacklist_too() -> None:
    g, _, pubsub, clock, _ = guard(ConnLimits(), BanList(ban_s=60, max_bans=1))
    first, second = new_peer(), new_peer()
    for p in (first, second):
        for _ in range(9):
            g.on_invalid(p, CAPS)
        clock.now += 1
    assert pubsub.blacklisted_peers == {ID.from_base58(first), ID.from_base58(second)}
    await g.sweep()
    assert pubsub.blacklisted_peers == {ID.from_base58(second)}


async def test_the_per_ip_limit_spares_loopback_unless_told() -> None:
    g, host, _, clock, registry = guard(ConnLimits(max_per_ip=1))
    peers = [new_peer() for _ in range(4)]
    for i, p in enumerate(peers):
        host.connect(p, "203.0.113.9" if i < 2 else "127.0.0.1")
        await g.sweep()
        clock.now += 1
    assert host.closed == [peers[1]] and closed(registry, "per_ip") == 1


async def test_the_lease_source_protects_its_peers() -> None:
    g, host, _, clock, _ = guard(ConnLimits(max_connections=1))
    held, other = new_peer(), new_peer()
    g.add_protected(lambda: {held})
    host.connect(held)
    clock.now += 1
    host.connect(other)
    await g.sweep()
    assert host.closed == [other]
    assert g.unprotect(held, "none") is False  # tags and sources are separate


async def test_a_flood_of_closes_logs_one_line_a_second(caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    g, host, _, clock, registry = guard(ConnLimits(max_connections=1))
    host.connect(new_peer())
    for _ in range(5):  # five newcomers within one second, each closed on arrival
        host.connect(new_peer())
        await g.sweep()
    clock.now += 1
    await g.sweep()
    lines = [r for r in caplog.records if r.getMessage() == "connections.closed"]
    assert closed(registry, "over_limit") == 5
    assert [r.fields["count"] for r in lines] == [1, 4]  # type: ignore[attr-defined]
