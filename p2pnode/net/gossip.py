"""The :class:`p2pnode.ports.Gossip` of the capability service over py-libp2p."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID

from p2pnode.net.caps_sync import caps_sync_protocol_id, make_sync_handler, pull_held_ads
from p2pnode.net.host import NetStack
from p2pnode.net.peering import dial, reannounce_subscriptions, repair_pubsub_peers
from p2pnode.peers import penalises_forwarder
from p2pnode.ports import TopicValidator
from p2pnode.wire.reasons import Reason


class _Subscription:
    def __init__(self, sub: Any) -> None:
        self._sub = sub

    async def get(self) -> tuple[bytes | None, bytes]:
        msg = await self._sub.get()
        return msg.from_id, msg.data


# Our subscriptions are announced again to a peer every upkeep with ``resubscribe`` while
# its pubsub stream is younger than this: the reconnect race that drops them (peering.py)
# plays out while the peer tears its old connection down, seconds after the new one.
# Announcing to every peer for ever cost each node an RPC per peer every 5 s.
RESUBSCRIBE_WINDOW_S = 60.0


class Libp2pGossip:
    def __init__(self, stack: NetStack, clock: Callable[[], float] = time.monotonic) -> None:
        self.stack = stack
        self.peer_id = stack.peer_id
        self.clock = clock
        # pubsub peer -> (its stream's token, when we first saw that stream)
        self._streams: dict[ID, tuple[int, float]] = {}

    def listen_addrs(self) -> list[str]:
        return self.stack.listen_addrs()

    def connected_peers(self) -> list[str]:
        return self.stack.connected_peers()

    def set_validator(self, topic: str, validate: TopicValidator) -> None:
        guard = self.stack.guard

        def adapter(forwarder: ID, msg: Any) -> bool:
            # py-libp2p's validators return a bool: the verdict's reason is counted by the
            # service, and a Reject counts against the forwarder's score here (PEER-2).
            fwd = forwarder.to_base58()
            verdict = validate(msg.from_id, msg.data, fwd)
            if guard is not None and fwd != self.peer_id and penalises_forwarder(verdict):
                guard.on_invalid(fwd, topic)
            return verdict.ok

        self.stack.pubsub.set_topic_validator(topic, adapter, False)

    async def subscribe(self, topic: str) -> _Subscription:
        return _Subscription(await self.stack.pubsub.subscribe(topic))

    async def publish(self, topic: str, data: bytes) -> None:
        await self.stack.pubsub.publish(topic, data)

    def topic_peers(self, topic: str) -> dict[str, int]:
        ps = self.stack.pubsub
        return {p.to_base58(): id(ps.peers.get(p)) for p in ps.peer_topics.get(topic, set())}

    def mesh_peers(self, topic: str) -> int:
        return len(self.stack.gossipsub.mesh.get(topic, ()))

    async def dial(self, addr: str, timeout: float) -> tuple[bool, str]:
        return await dial(self.stack, addr, timeout=timeout)

    async def upkeep(self, resubscribe: bool) -> int:
        repaired = await repair_pubsub_peers(self.stack)
        if resubscribe:
            await reannounce_subscriptions(self.stack, self.fresh_streams())
        return repaired

    def fresh_streams(self) -> list[ID]:
        """Pubsub peers whose stream is younger than RESUBSCRIBE_WINDOW_S."""
        now = self.clock()
        peers = self.stack.pubsub.peers
        seen = {}
        for peer, stream in list(peers.items()):
            token, since = self._streams.get(peer, (id(stream), now))
            if token != id(stream):
                since = now
            seen[peer] = (id(stream), since)
        self._streams = seen
        return [p for p, (_, since) in seen.items() if now - since < RESUBSCRIBE_WINDOW_S]

    def peer_addrs(self) -> dict[str, list[str]]:
        out = {}
        ps = self.stack.host.get_peerstore()
        for pid in self.stack.host.get_connected_peers():
            try:
                addrs = [str(a) for a in ps.addrs(pid)]
            except (BaseLibp2pError, KeyError):  # the peerstore raises when it has none
                addrs = []
            out[pid.to_base58()] = addrs
        return out

    def serve_held_ads(self, answer: Callable[[str], list[bytes]],
                       on_refused: Callable[[], None]) -> None:
        self.stack.host.set_stream_handler(caps_sync_protocol_id(self.stack.net),
                                           make_sync_handler(answer, on_refused))

    async def pull_held_ads(self, peer: str) -> tuple[list[bytes], Reason | None]:
        return await pull_held_ads(self.stack.host, peer, self.stack.net)
