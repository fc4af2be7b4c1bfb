"""A hostile peer advertises addresses on the victim's own loopback and LAN, a DNS name and
a multicast address: a node on a public network (``private_addrs = "deny"``) dials none of
them (spec 03 ADDR-1 to ADDR-6); a devnet node (``allow``) dials the loopback one, which
shows that the test would see a dial."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import trio
from libp2p.peer.id import ID

from p2pnode.node import Node
from p2pnode.services.caps import DIAL_TICK_S
from tests.adversarial.attacker import attacker_against
from tests.caps.ads import make_ad
from tests.integration.helpers import running_nodes, wait_for

TEST_TIMEOUT_S = 30
TICKS_WATCHED = 3  # dial rounds the victim gets to take the bait


def dials(node: Node) -> float:
    registry = node.metrics.registry
    return sum(registry.get_sample_value("p2pnode_ad_dials_total", {"result": r}) or 0
               for r in ("ok", "failed"))


@pytest.mark.parametrize("private_addrs", ["deny", "allow"])
async def test_advertised_private_addresses_are_dialled_only_where_allowed(
        tmp_path: Path, private_addrs: str) -> None:
    trap_hits = 0

    async def trap(stream: trio.SocketStream) -> None:
        nonlocal trap_hits
        trap_hits += 1
        await stream.aclose()

    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as outer:
            listeners = await outer.start(partial(trio.serve_tcp, trap, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            addrs = (f"/ip4/127.0.0.1/tcp/{port}", "/ip4/10.11.12.13/tcp/22",
                     "/dns4/localhost/tcp/22", "/ip4/224.0.0.1/tcp/22")
            async with running_nodes(tmp_path, 1, net_private_addrs=private_addrs) as [victim]:
                assert victim.caps is not None
                async with attacker_against(victim) as attacker:
                    ad = make_ad(seq=1, ts=victim.now_ms(), addrs=addrs)
                    await attacker.publish(ad.encode(attacker.identity))
                    await wait_for(lambda: victim.table.held_seq(attacker.peer_id) == 1)
                    # Gone again, and forgotten by both hosts' peerstores (py-libp2p's own
                    # reconnecting dials them): the victim can now reach it only through
                    # the addresses in its ad.
                    victim_id, attacker_id = (ID.from_base58(victim.peer_id),
                                              ID.from_base58(attacker.peer_id))
                    victim.stack.host.get_peerstore().clear_addrs(attacker_id)
                    attacker.host.get_peerstore().clear_addrs(victim_id)
                    await attacker.host.disconnect(victim_id)
                    await wait_for(lambda: attacker.peer_id not in
                                   victim.caps.gossip.connected_peers())
                    if private_addrs == "allow":
                        await wait_for(lambda: trap_hits > 0)
                    else:
                        await trio.sleep(TICKS_WATCHED * DIAL_TICK_S)
                        assert trap_hits == 0 and dials(victim) == 0
                        assert attacker.peer_id not in victim.caps.gossip.connected_peers()
                registry = victim.metrics.registry
                dropped = {r: registry.get_sample_value("p2pnode_ad_addrs_dropped_total",
                                                        {"reason": r}) or 0
                           for r in ("private", "malformed", "not_unicast")}
                assert dropped["malformed"] >= 1 and dropped["not_unicast"] >= 1
                assert (dropped["private"] >= 2) == (private_addrs == "deny")
            outer.cancel_scope.cancel()
