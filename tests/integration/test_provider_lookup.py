"""Provider lookups over real hosts ask a few of the closest peers, not every node (KAD-10)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import trio

from p2pnode.dhtpolicy import LOOKUP_BETA
from p2pnode.jobs import discovery
from p2pnode.net import dht as dhtx
from p2pnode.node import Node
from tests.integration.helpers import running_nodes, wait_for

N = 8


def count_queries(node: Node) -> list[Any]:
    assert node.stack is not None
    store = node.stack.dht.provider_store
    asked: list[Any] = []
    ask = store._get_providers_from_peer_with_closers

    async def counted(peer: Any, key: bytes) -> Any:
        asked.append(peer)
        return await ask(peer, key)

    store._get_providers_from_peer_with_closers = counted
    return asked


async def test_lookups_find_providers_asking_a_few_peers(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, N, jobs_discovery_interval_s=600.0) as nodes:
        stacks = [n.stack for n in nodes]
        assert all(s is not None for s in stacks)
        # everyone dials everyone, so every routing table holds the whole network
        for a in nodes:
            for b in nodes:
                if a is not b:
                    assert a.stack is not None and b.stack is not None
                    ok, err = await dial_peer(a, b)
                    assert ok, err
        await wait_for(lambda: all(n.stack.dht.routing_table.size() == N - 1  # type: ignore[union-attr]
                                   for n in nodes))
        provider, seeker = nodes[1], nodes[-1]
        key = discovery.discovery_key("testnet", "matmul", "cpu", 7)
        assert provider.stack is not None and seeker.stack is not None
        assert await dhtx.provide(provider.stack.dht, key, 10)

        # A key nobody provides: py-libp2p's lookup asked all 7 other peers, twice; ours
        # asks the LOOKUP_BETA closest to the key, each once (every peer answers).
        asked = count_queries(seeker)
        nobody = discovery.discovery_key("testnet", "wasm", "cpu", 7)
        with trio.fail_after(15):
            assert await dhtx.find_providers(seeker.stack.dht, nobody, 10) == []
        assert sorted(asked, key=str) == closest(seeker, nodes, nobody)

        # The seeker holds the provider's record itself (every node is among the 20
        # closest): found without asking anyone.
        asked.clear()
        found = await dhtx.find_providers(seeker.stack.dht, key, 10)
        assert [i.peer_id.to_base58() for i in found] == [provider.peer_id]
        assert asked == []

        # Without its own copy, the seeker asks a few peers and finds it.
        store = seeker.stack.dht.provider_store
        store._drop(bytes.fromhex(key), str(provider.stack.host.get_id()))
        found = await dhtx.find_providers(seeker.stack.dht, key, 10)
        assert [i.peer_id.to_base58() for i in found] == [provider.peer_id]
        assert sorted(asked, key=str) == closest(seeker, nodes, key)


def closest(seeker: Node, nodes: list[Node], key: str) -> list[Any]:
    """The LOOKUP_BETA peers of ``nodes`` other than ``seeker`` closest to ``key`` by
    Kademlia's XOR distance (sha256 of the key bytes and of each peer id's bytes)."""
    target = int.from_bytes(hashlib.sha256(bytes.fromhex(key)).digest(), "big")
    ids = [n.stack.host.get_id() for n in nodes if n is not seeker]  # type: ignore[union-attr]
    ids.sort(key=lambda p: target ^ int.from_bytes(hashlib.sha256(p.to_bytes()).digest(),
                                                   "big"))
    return sorted(ids[:LOOKUP_BETA], key=str)


async def dial_peer(a: Node, b: Node) -> tuple[bool, str]:
    from p2pnode.net.peering import dial

    assert a.stack is not None and b.stack is not None
    return await dial(a.stack, f"{b.stack.listen_addrs()[0].split('/p2p/')[0]}/p2p/{b.peer_id}")
