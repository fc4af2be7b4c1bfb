"""ADDR-7: addresses a peer reports about itself (identify) or that a DHT answer carries are
kept for dialling only where the address policy allows them. py-libp2p dials whatever its
peerstore holds (its auto-connector, DHT lookups, streams to unconnected peers), so an
address refused there is an address the node never dials."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from p2pnode.identity import Identity
from p2pnode.node import Node
from tests.adversarial.attacker import attacker_against
from tests.integration.helpers import running_nodes, wait_for

TEST_TIMEOUT_S = 30


def held_addrs(node: Node, peer: str) -> list[str]:
    try:
        return [str(a) for a in node.stack.host.get_peerstore().addrs(ID.from_base58(peer))]
    except Exception:  # the peerstore raises for a peer it holds no addresses of
        return []


def dropped(node: Node, reason: str) -> float:
    return node.metrics.registry.get_sample_value(
        "p2pnode_peer_addrs_dropped_total", {"reason": reason}) or 0


@pytest.mark.parametrize("private_addrs", ["deny", "allow"])
async def test_a_peers_own_loopback_address_is_kept_only_where_allowed(
        tmp_path: Path, private_addrs: str) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with (running_nodes(tmp_path, 1, net_private_addrs=private_addrs) as [victim],
                    attacker_against(victim) as attacker):
            # The attacker listens on 127.0.0.1 and says so in identify.
            await wait_for(lambda: victim.stack.host.get_peerstore()
                           .supports_protocols(ID.from_base58(attacker.peer_id),
                                               ["/meshsub/1.1.0"]) != [])
            if private_addrs == "allow":
                await wait_for(lambda: any("/ip4/127.0.0.1/" in a for a in
                                           held_addrs(victim, attacker.peer_id)))
            else:
                await wait_for(lambda: dropped(victim, "private") > 0)
                assert held_addrs(victim, attacker.peer_id) == []


async def test_addresses_in_a_dht_answer_pass_the_same_policy(tmp_path: Path) -> None:
    """What a DHT answer names (a closer peer, a provider) enters the peerstore as any
    other address does: only public TCP addresses of IP literals stay on a public network."""
    other = ID.from_base58(Identity.generate().peer_id)
    third = Identity.generate().peer_id
    offered = [f"/ip4/93.184.216.35/tcp/4001/p2p/{other}", f"/ip4/93.184.216.36/tcp/1/p2p/{third}",
               "/ip4/127.0.0.1/tcp/4001", "/ip4/10.0.0.1/tcp/4001", "/ip4/169.254.169.254/tcp/80",
               "/ip4/0.0.0.0/tcp/4001", "/dns4/example.com/tcp/4001",
               "/ip4/8.8.8.8/udp/4001/quic-v1", "/ip4/93.184.216.34/tcp/4001"]
    with trio.fail_after(TEST_TIMEOUT_S):
        async with running_nodes(tmp_path, 1, net_private_addrs="deny") as [node]:
            node.stack.host.get_peerstore().add_addrs(
                other, [Multiaddr(a) for a in offered], 60)
            assert sorted(held_addrs(node, other.to_base58())) == [
                "/ip4/93.184.216.34/tcp/4001", f"/ip4/93.184.216.35/tcp/4001/p2p/{other}"]
            assert dropped(node, "private") == 3
            assert dropped(node, "not_unicast") == 1
            assert dropped(node, "malformed") == 3  # DNS, QUIC, another peer's /p2p/
