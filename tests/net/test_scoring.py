"""The py-libp2p scorer adapter (spec 03 §4.1, §6): what feeds P4, the score over all
topics, and the gates GossipSub asks it."""

from __future__ import annotations

from typing import Any

from libp2p.peer.id import ID

from p2pnode.identity import Identity
from p2pnode.net.host import libp2p_key_pair
from p2pnode.net.scoring import Scorer, gate_gossip
from p2pnode.peers import GOSSIP_THRESHOLD, GRAYLIST_THRESHOLD, topic_score

CAPS = "/p2pnode/devnet/caps/1"
LEDGER = "/p2pnode/devnet/ledger/1"


def peer() -> ID:
    return ID.from_pubkey(libp2p_key_pair(Identity.generate()).public_key)


def test_pubsubs_own_feed_of_failed_validations_is_not_counted() -> None:
    s, p = Scorer(), peer()
    for _ in range(50):
        s.on_invalid_message(p, CAPS)  # ignores and cached verdicts come this way too
    assert s.score(p, [CAPS]) == 0.0
    s.record_invalid(p, CAPS)
    assert s.score(p, [CAPS]) == topic_score(CAPS, 0, 1)


def test_the_score_is_over_every_topic_whatever_topic_is_asked() -> None:
    s, p = Scorer(), peer()
    for _ in range(3):
        s.on_first_delivery(p, CAPS)
    s.record_invalid(p, LEDGER)
    expected = topic_score(CAPS, 3, 0) + topic_score(LEDGER, 0, 1)
    assert s.score(p, [CAPS]) == s.score(p, [LEDGER]) == s.score(p, []) == expected


def test_counters_decay_at_each_heartbeat() -> None:
    s, p = Scorer(), peer()
    s.record_invalid(p, CAPS)
    s.on_heartbeat()
    assert s.invalid_messages[p][CAPS] < 1.0


def test_the_gates_follow_the_thresholds() -> None:
    s, p = Scorer(), peer()
    n = 0
    while s.allow_gossip(p, [CAPS]):
        s.record_invalid(p, CAPS)
        n += 1
    assert s.score(p, []) < GOSSIP_THRESHOLD and n == 4
    assert s.allow_publish(p, [CAPS])  # received messages are still taken, and counted
    while not s.is_graylisted(p, [CAPS]):
        s.record_invalid(p, CAPS)
        n += 1
    assert s.score(p, []) < GRAYLIST_THRESHOLD and n == 9
    assert not s.allow_publish(p, [CAPS])
    # Looking a peer up adds no counters (the counters are defaultdicts).
    other = peer()
    s.score(other, [CAPS])
    assert other not in s.invalid_messages and other not in s.first_message_deliveries


async def test_gossip_from_a_peer_below_the_gossip_threshold_is_ignored() -> None:
    class Router:
        def __init__(self) -> None:
            self.seen: list[tuple[str, ID]] = []

        async def handle_ihave(self, msg: Any, sender: ID) -> None:
            self.seen.append(("ihave", sender))

        async def handle_iwant(self, msg: Any, sender: ID) -> None:
            self.seen.append(("iwant", sender))

    router, s = Router(), Scorer()
    good, bad = peer(), peer()
    for _ in range(4):
        s.record_invalid(bad, CAPS)
    gate_gossip(router, s)  # type: ignore[arg-type]
    for sender in (good, bad):
        await router.handle_ihave(None, sender)
        await router.handle_iwant(None, sender)
    assert router.seen == [("ihave", good), ("iwant", good)]


def test_own_messages_flood_to_every_admitted_topic_peer() -> None:
    from types import SimpleNamespace

    from p2pnode.net.scoring import flood_own_messages

    me, a, b, c, d = (ID(bytes([i]) * 34) for i in range(5))
    mesh = {a}

    class Router:
        pubsub = SimpleNamespace(my_id=me, peer_topics={"t": {me, a, b, c}, "u": {d}})

        def _get_peers_to_send(self, topic_ids: Any, msg_forwarder: Any, origin: Any,
                               msg_id: Any = None) -> Any:
            return iter(mesh - {msg_forwarder, origin})

    class Gate:
        def allow_publish(self, peer: Any, topics: list[str]) -> bool:
            return peer != c  # c is below the publish gate

    router: Any = Router()
    flood_own_messages(router, Gate())  # type: ignore[arg-type]
    assert router._get_peers_to_send(["t"], me, me) == {a, b}  # ours: every admitted peer
    assert router._get_peers_to_send(["t"], b, d) == {a}  # relayed: the mesh only
