"""A peer that writes a pubsub frame which is not a protobuf RPC: its stream is dropped and
the node keeps serving (py-libp2p let the parse error end the whole connection's nursery,
and with it the node)."""

from __future__ import annotations

from pathlib import Path

from libp2p.peer.id import ID
from libp2p.utils.varint import encode_uvarint

from p2pnode.net.host import GOSSIPSUB_PROTOCOLS, PUBSUB_GARBAGE
from tests.adversarial.attacker import attacker_against
from tests.integration.helpers import running_nodes, wait_for


async def test_a_garbage_pubsub_frame_is_dropped(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, 1) as (victim,):
        before = PUBSUB_GARBAGE.frames
        async with attacker_against(victim) as evil:
            stream = await evil.host.new_stream(ID.from_base58(victim.peer_id),
                                                list(GOSSIPSUB_PROTOCOLS))
            garbage = b"\xff" * 10
            await stream.write(encode_uvarint(len(garbage)) + garbage)
            await wait_for(lambda: PUBSUB_GARBAGE.frames == before + 1)
        # The node still runs: a newcomer joins its mesh, and what it publishes is judged
        # (and refused) by the victim's validator.
        def refused() -> float:
            reg = victim.metrics.registry
            return sum(s.value for m in reg.collect() if m.name == "p2pnode_messages_rejected"
                       for s in m.samples if s.name.endswith("_total"))

        seen = refused()
        async with attacker_against(victim) as again:
            await again.publish(b"not an ad")
            await wait_for(lambda: refused() > seen)
