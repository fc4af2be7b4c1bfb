"""Capability ads flow between real libp2p hosts on loopback."""

from __future__ import annotations

from pathlib import Path

from tests.integration.helpers import running_nodes, wait_for


async def test_three_nodes_learn_each_others_capabilities(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, 3) as nodes:
        await wait_for(lambda: all(n.caps_known() == 2 for n in nodes))
        ids = {n.peer_id for n in nodes}
        for n in nodes:
            rows = n.caps_rows()
            assert {r["peer_id"] for r in rows} == ids
            other = next(r for r in rows if not r["self"])
            assert other["cpu"] == {"cores": 2, "threads": 4, "arch": "x86_64"}
            assert other["kinds"] == ["matmul", "wasm"]
            assert n.metrics.snapshot()["ads_rejected"] == {}
            # Each ad is checked by the topic validator and again on delivery, and the
            # bootstrap ad may also come back by DHT or redial: one verification per ad
            # (ENV-12), whatever the number of copies.
            accepted = n.metrics.snapshot()["ads_accepted"]
            assert n.signatures.hits >= accepted
            assert n.signatures.verifications <= accepted + 2


async def test_a_restarted_node_redials_the_peers_it_knew(tmp_path: Path) -> None:
    import trio

    from p2pnode.identity import Identity
    from p2pnode.node import Node
    from tests.integration.helpers import HW, node_config, run_in_own_scope

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ident_a = Identity.generate()
    async with trio.open_nursery() as outer:
        a = Node(tmp_path / "a", node_config(), ident_a, hardware=HW)
        a_scope = await outer.start(run_in_own_scope, a)
        b = Node(tmp_path / "b", node_config(bootstrap=(a.stack.listen_addrs()[0],)),
                 Identity.generate(), hardware=HW)
        await outer.start(b.run)
        await wait_for(lambda: a.caps_known() == 1 and b.caps_known() == 1)
        a_scope.cancel()
        await wait_for(lambda: a.stack is None)
        # Same key and state, a new port, no bootstrap peer: only the stored addresses of
        # the peers it saw can bring it back into the network.
        again = Node(tmp_path / "a", node_config(), ident_a, hardware=HW)
        await outer.start(again.run)
        await wait_for(lambda: b.peer_id in again.stack.connected_peers())
        await wait_for(lambda: again.caps_known() == 1)
        outer.cancel_scope.cancel()
