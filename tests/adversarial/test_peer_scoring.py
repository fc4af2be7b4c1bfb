"""Hostile peers against peer scoring, bans and the connection manager (spec 03 §4.1,
§5.5), over real hosts on 127.0.0.1.

- A peer that floods its neighbours with invalid gossip is graylisted, banned and
  disconnected by each of them, and refused when it dials again, while the honest nodes'
  ads still flow.
- A flood of dialling connections never pushes out the bootstrap peer or a leaseholder,
  and the connection count stays within its limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import multiaddr
import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from p2pnode.identity import Identity
from p2pnode.jobs.market import RequesterJob
from p2pnode.net.host import build_host
from p2pnode.node import Node
from p2pnode.peers import (
    GRAYLIST_THRESHOLD,
    HARD_LIMIT_HEADROOM,
    MAX_BANS,
    BanReason,
    CloseReason,
    topic_score,
)
from tests.adversarial.attacker import LOOPBACK, attacker_against, node_addr, signed_pubsub_message
from tests.integration.helpers import HW, LOOP_WAT, node_config, running_nodes, wait_for

TEST_TIMEOUT_S = 40
BAN_S = 300.0


def counter(node: Node, name: str, **labels: str) -> float:
    value = node.metrics.registry.get_sample_value(f"{name}_total", labels or None)
    return value or 0.0


def sybil_messages(topic: str, n: int) -> list[Any]:
    """``n`` correctly signed pubsub messages of garbage, each from a fresh key."""
    return [signed_pubsub_message(Identity.generate(), b"\xff not an envelope %d" % i, topic, i)
            for i in range(n)]


def connected(node: Node, peer: str) -> bool:
    assert node.stack is not None
    return peer in node.stack.connected_peers()


async def honest_ads_flow(src: Node, dst: Node) -> None:
    assert src.caps is not None
    before = dst.table.held_seq(src.peer_id) or 0
    await src.caps.publish()
    await wait_for(lambda: (dst.table.held_seq(src.peer_id) or 0) > before, timeout=10)


async def test_an_invalid_gossip_flood_gets_the_sender_graylisted_banned_and_refused(
        tmp_path: Path) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with running_nodes(tmp_path, 3, peers_ban_s=BAN_S) as nodes, \
                attacker_against(nodes[0]) as bad:
            victims = nodes[:2]
            await bad.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(node_addr(nodes[1]))))
            await wait_for(lambda: {v.peer_id for v in victims} <= {
                p.to_base58() for p in bad.gossipsub.mesh.get(bad.topic, set())})
            await wait_for(lambda: all(bad.peer_id in {
                p.to_base58() for p in v.stack.pubsub.peer_topics.get(bad.topic, set())}
                for v in victims if v.stack is not None))

            # Each from a fresh origin key, so no per-origin rate limit (RL-1) spares the
            # victims the full validation of every one: all of it lands on the forwarder.
            for msg in sybil_messages(bad.topic, 100):
                await bad.pubsub.push_msg(bad.pubsub.my_id, msg)

            for v in victims:
                await wait_for(lambda v=v: counter(
                    v, "p2pnode_peers_banned", reason=BanReason.GRAYLISTED.value) == 1,
                    timeout=10)
                await wait_for(lambda v=v: not connected(v, bad.peer_id), timeout=10)
                assert counter(v, "p2pnode_peers_graylisted") == 1
                # Only the first few of the flood were validated, enough to graylist it:
                # then pubsub dropped the rest unread, and the connection went.
                invalid = counter(v, "p2pnode_gossip_invalid", topic=bad.topic)
                assert topic_score(bad.topic, 0, invalid) < GRAYLIST_THRESHOLD
                assert invalid < 100
                assert v.stack is not None and v.stack.guard is not None
                assert v.stack.guard.is_banned(bad.peer_id)
                assert v.stack.guard.bans.ban_s == BAN_S  # [peers] ban_s
            # Nothing the attacker sent reached an honest node's table.
            assert all(bad.peer_id not in {e.peer_id for e in n.table.live(n.now_ms())}
                       for n in nodes)

            # It dials again: the victim lets the handshake finish (only then does it know
            # the PeerID) and closes the connection at once.
            victim = victims[0]
            before = counter(victim, "p2pnode_connections_closed",
                             reason=CloseReason.BANNED.value)
            try:
                await bad.host.connect(
                    info_from_p2p_addr(multiaddr.Multiaddr(node_addr(victim))))
            except Exception:  # refused before or during the upgrade: as good
                pass
            await wait_for(lambda: counter(victim, "p2pnode_connections_closed",
                                           reason=CloseReason.BANNED.value) > before,
                           timeout=10)
            await wait_for(lambda: not connected(victim, bad.peer_id), timeout=10)
            # ... and the victim does not dial it either.
            assert victim.caps is not None
            ok, err = await victim.caps.gossip.dial(
                f"{bad.host.get_addrs()[0]}".split("/p2p/")[0] + f"/p2p/{bad.peer_id}", 3.0)
            assert (ok, err) == (False, "banned")
            assert victim.status()["limits"]["bans"] == {"held": 1, "cap": MAX_BANS}
            assert counter(victim, "p2pnode_dials_refused", reason="banned") == 1

            # The honest nodes still hear each other.
            await honest_ads_flow(nodes[2], nodes[0])
            await honest_ads_flow(nodes[0], nodes[1])
            await honest_ads_flow(nodes[1], nodes[0])


@asynccontextmanager
async def raw_hosts(n: int) -> AsyncIterator[list[Any]]:
    """``n`` bare py-libp2p hosts (Noise, Yamux) listening on 127.0.0.1."""
    async with AsyncExitStack() as stack:
        hosts = []
        for _ in range(n):
            host = build_host(Identity.generate())
            await stack.enter_async_context(host.run([multiaddr.Multiaddr(LOOPBACK)]))
            hosts.append(host)
        yield hosts


MAX_CONNECTIONS = 10
DIALERS = 40
ROUNDS = 5  # 200 dialled connections in all


@asynccontextmanager
async def requester_with_a_leaseholder(tmp: Path, limit: int) -> AsyncIterator[
        tuple[Node, Node, Node, RequesterJob]]:
    """A bootstrap node, a requester bootstrapped from it, and a worker (the only node that
    runs jobs) that holds a live lease of the requester's: a loop job that runs for longer
    than the test (its child process is killed at the end)."""
    from p2pnode.jobs.executors import compile_wat
    from p2pnode.jobs.model import Requirements

    async with trio.open_nursery() as nursery:
        nodes = []
        for name, kinds, fuel in (("boot", (), None), ("req", (), None),
                                  ("worker", ("wasm",), 10**12)):
            (tmp / name).mkdir()
            boot = (node_addr(nodes[0]),) if nodes else ()
            cfg = node_config(bootstrap=boot, caps_kinds=kinds, jobs_wasm_fuel=fuel,
                              peers_max_connections=limit)
            node = Node(tmp / name, cfg, Identity.generate(), hardware=HW)
            await nursery.start(node.run)
            nodes.append(node)
        boot_node, req, worker = nodes
        await wait_for(lambda: worker.peer_id in req.table)
        assert req.market is not None and worker.market is not None
        job = await req.market.requester.submit(
            "wasm", {"module": compile_wat(LOOP_WAT),
                     "input": (10_000_000).to_bytes(4, "little")}, {}, Requirements(),
            lease_s=20)
        work = worker.market.worker.machine.work
        await wait_for(lambda: job.id in work and work[job.id].state.value == "running")
        try:
            yield boot_node, req, worker, job
        finally:
            nursery.cancel_scope.cancel()


async def test_a_connection_flood_does_not_push_out_protected_peers(tmp_path: Path) -> None:
    limit = MAX_CONNECTIONS
    with trio.fail_after(TEST_TIMEOUT_S):
        async with requester_with_a_leaseholder(tmp_path, limit) as (
                boot, victim, worker, job), raw_hosts(DIALERS) as hosts:
            assert victim.stack is not None and victim.stack.guard is not None
            # Protected because it is the configured bootstrap peer, and because it holds
            # a live lease of ours (the node asks its market, PEER-8).
            assert {boot.peer_id, worker.peer_id} <= victim.stack.guard.protected()
            await wait_for(lambda: connected(victim, boot.peer_id)
                           and connected(victim, worker.peer_id))
            leaseholder = worker
            target = info_from_p2p_addr(multiaddr.Multiaddr(node_addr(victim)))
            victim_id = ID.from_base58(victim.peer_id)
            stack = victim.stack
            peak = 0
            dials = 0

            async def dial(host: Any) -> None:
                nonlocal dials
                with trio.move_on_after(5):
                    # A fresh connection each round, whatever the last one became.
                    await host.disconnect(victim_id)
                    # ... and past the dialler's own memory of a refused dial.
                    host.get_network().unblock_peer(victim_id)
                    dials += 1
                    try:
                        await host.connect(target)
                    except Exception:  # refused at the hard cap
                        pass

            for _ in range(ROUNDS):
                async with trio.open_nursery() as nursery:
                    for host in hosts:
                        nursery.start_soon(dial, host)
                    for _ in range(10):
                        peak = max(peak, len(stack.host.get_network().get_connections()))
                        await trio.sleep(0.05)
                assert connected(victim, boot.peer_id)
                assert connected(victim, leaseholder.peer_id)
            assert dials == DIALERS * ROUNDS
            assert peak <= limit + HARD_LIMIT_HEADROOM
            await wait_for(lambda: len(stack.host.get_network().get_connections()) <= limit,
                           timeout=5)
            assert connected(victim, boot.peer_id) and connected(victim, leaseholder.peer_id)
            assert counter(victim, "p2pnode_connections_closed",
                           reason=CloseReason.OVER_LIMIT.value) >= DIALERS
            assert victim.metrics.registry.get_sample_value("p2pnode_connections_max") == limit
            assert victim.metrics.registry.get_sample_value("p2pnode_peers_protected") == 2
            usage = victim.status()["limits"]["connections"]
            assert usage["cap"] == limit and usage["held"] <= limit
            # The worker was protected by its lease throughout: the lease is still live.
            assert not job.terminal
