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
            # An ad comes by gossip and again in the held-ads exchange (and the bootstrap's
            # by DHT or redial): one verification per distinct ad (ENV-12), stored or
            # ignored as stale, whatever the number of copies.
            snap = n.metrics.snapshot()
            distinct = snap["ads_accepted"] + sum(snap["ads_ignored"].values())
            assert 0 < n.signatures.verifications <= distinct


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


async def test_a_new_node_learns_held_ads_on_joining_whatever_the_interval(
        tmp_path: Path) -> None:
    # No periodic ad within the test: whatever the joiner learns of the node it is not
    # connected to, it learns from the held-ads answer of the node it joined through.
    async with running_nodes(tmp_path, 2, caps_interval_s=600.0, caps_ttl_s=1800) as nodes:
        await wait_for(lambda: all(n.caps_known() == 1 for n in nodes))
        import trio

        from p2pnode.identity import Identity
        from p2pnode.node import Node
        from tests.integration.helpers import HW, node_config

        a, b = nodes
        (tmp_path / "c").mkdir()
        boot = f"{a.stack.listen_addrs()[0].split('/p2p/')[0]}/p2p/{a.peer_id}"
        c = Node(tmp_path / "c", node_config(bootstrap=(boot,), caps_interval_s=600.0,
                                             caps_ttl_s=1800),
                 Identity.generate(), hardware=HW)
        async with trio.open_nursery() as nursery:
            await nursery.start(c.run)
            await wait_for(lambda: c.caps_known() == 2, timeout=10)
            assert c.caps is not None and c.caps.table.get(b.peer_id) is not None

            def synced(outcome: str) -> float:
                return c.metrics.registry.get_sample_value(
                    "p2pnode_caps_sync_ads_total", {"outcome": outcome}) or 0.0

            # Both ads came in a's answer (valid, or stale when gossip was first).
            await wait_for(lambda: synced("valid") + synced("stale_seq") >= 2, timeout=10)
            # ... and a learnt c's ad from c's answer in turn.
            await wait_for(lambda: a.caps_known() == 2, timeout=10)
            nursery.cancel_scope.cancel()
