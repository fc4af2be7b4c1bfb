"""A hostile peer for adversarial tests: a raw py-libp2p host with its own GossipSub.

It is built like a node's stack (Noise, Yamux, GossipSub) but registers no topic validator
and has spam protection off, so its router forwards whatever it is told to publish.

How py-libp2p 0.8.1 publishes: ``Pubsub.publish`` wraps the data in a message with our
PeerID as ``from_id`` and a fresh ``seqno``, signs it (strict signing), and hands it to
``push_msg`` as if we had received it: that checks the pubsub signature, runs the topic
validators (we have none, so every payload passes), marks it seen, delivers it to our own
subscription and then lets GossipSub send it to our mesh peers for the topic. The victim
checks the pubsub signature too, so an attacker cannot forge ``from_id``; everything in the
payload is up to the victim's own validator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import multiaddr
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from p2pnode.identity import Identity, peer_id_bytes
from p2pnode.net.host import GOSSIPSUB_PROTOCOLS, build_host
from p2pnode.node import Node
from tests.integration.helpers import wait_for

LOOPBACK = "/ip4/127.0.0.1/tcp/0"


def node_addr(node: Node) -> str:
    """The ``/ip4/.../tcp/.../p2p/<id>`` address to dial ``node`` at."""
    return f"{node.stack.listen_addrs()[0].split('/p2p/')[0]}/p2p/{node.peer_id}"


@dataclass
class Attacker:
    identity: Identity
    host: Any
    pubsub: Pubsub
    gossipsub: GossipSub
    topic: str
    subscription: Any

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    @property
    def source(self) -> bytes:
        """The binary PeerID the victim sees as the origin of our messages."""
        return peer_id_bytes(self.identity.public_key)

    async def publish(self, data: bytes) -> None:
        # Each publish gets a fresh pubsub seqno, so the victim's duplicate filter (keyed by
        # origin and seqno) never hides a replayed payload: the validator must catch it.
        await self.pubsub.publish(self.topic, data)

    async def next_message_data(self) -> bytes:
        msg = await self.subscription.get()
        return bytes(msg.data)


async def read_all(stream: Any) -> bytes:
    """Everything the other side sends until it closes or resets the stream."""
    got = b""
    try:
        while chunk := await stream.read(65536):
            got += chunk
    except StreamError:  # EOF or reset
        pass
    return got


@asynccontextmanager
async def attacker_against(victim: Node, identity: Identity | None = None,
                           topic: str | None = None) -> AsyncIterator[Attacker]:
    """Connect a hostile peer to ``victim`` and join its mesh on ``topic`` (its caps topic
    by default)."""
    identity = identity or Identity.generate()
    host = build_host(identity)
    gossipsub = GossipSub(
        protocols=GOSSIPSUB_PROTOCOLS,
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=1,
        spam_protection_enabled=False,
        eclipse_protection_enabled=False,
    )
    pubsub = Pubsub(host, gossipsub, strict_signing=True)
    topic = topic or victim.topic
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(host.run([multiaddr.Multiaddr(LOOPBACK)]))
        await stack.enter_async_context(background_trio_service(pubsub))
        await stack.enter_async_context(background_trio_service(gossipsub))
        await pubsub.wait_until_ready()
        await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(node_addr(victim))))
        sub = await pubsub.subscribe(topic)
        # Publish goes to our mesh peers: wait until the victim is one, and until the
        # victim knows we are subscribed (so it treats us as a topic peer).
        await wait_for(lambda: any(p.to_base58() == victim.peer_id
                                   for p in gossipsub.mesh.get(topic, set())))
        await wait_for(lambda: identity.peer_id in {
            p.to_base58() for p in victim.stack.pubsub.peer_topics.get(topic, set())})
        yield Attacker(identity=identity, host=host, pubsub=pubsub, gossipsub=gossipsub,
                       topic=topic, subscription=sub)


def signed_pubsub_message(origin: Identity, data: bytes, topic: str, seqno: int) -> Any:
    """A pubsub message from ``origin`` with a correct StrictSign signature, ready for
    ``push_msg`` (so it can come from any key, not only the attacker host's own)."""
    from libp2p.peer.id import ID
    from libp2p.pubsub.pb import rpc_pb2
    from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX

    from p2pnode.net.host import libp2p_key_pair

    kp = libp2p_key_pair(origin)
    msg = rpc_pb2.Message(data=data, topicIDs=[topic],
                          from_id=ID.from_pubkey(kp.public_key).to_bytes(),
                          seqno=seqno.to_bytes(8, "big"))
    msg.signature = kp.private_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
    msg.key = kp.public_key.serialize()
    return msg
