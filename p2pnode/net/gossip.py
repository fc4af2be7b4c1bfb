"""The :class:`p2pnode.ports.Gossip` of the capability service over py-libp2p."""

from __future__ import annotations

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


class Libp2pGossip:
    def __init__(self, stack: NetStack) -> None:
        self.stack = stack
        self.peer_id = stack.peer_id

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

    async def dial(self, addr: str, timeout: float) -> tuple[bool, str]:
        return await dial(self.stack, addr, timeout=timeout)

    async def upkeep(self, resubscribe: bool) -> int:
        repaired = await repair_pubsub_peers(self.stack)
        if resubscribe:
            await reannounce_subscriptions(self.stack)
        return repaired

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
