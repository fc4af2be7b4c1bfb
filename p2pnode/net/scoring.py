"""GossipSub peer scoring over py-libp2p 0.8.1's ``PeerScorer`` (spec 03 §4.1).

The score itself is ``p2pnode.peers.topic_score``; this adapter keeps py-libp2p's
counters and hooks and replaces what in them differs from GossipSub v1.1 (spec 03 §6):

- every topic had the same parameters: here each topic has its weight (PEER-1);
- ``score(peer, [topic])`` counted one topic only: here the score is over all topics;
- P4 was linear, and fed by every failed validation, including messages our validators
  ignore (stale, over a rate limit) and replays of a cached verdict: here pubsub's own feed
  is dropped and P4 counts only our validators' ``Reject`` (PEER-2), squared;
- received messages were dropped at the *publish* threshold, so a peer stopped being
  counted before it could reach the graylist: here that gate is the graylist threshold
  (PEER-3);
- IHAVE and IWANT were answered whatever the sender's score: :func:`gate_gossip` ignores
  them below the gossip threshold (PEER-3).
"""

from __future__ import annotations

from typing import Any

from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.score import PeerScorer, ScoreParams, TopicScoreParams

from p2pnode.peers import (
    FIRST_DELIVERY_CAP,
    FIRST_DELIVERY_DECAY,
    GOSSIP_THRESHOLD,
    GRAYLIST_THRESHOLD,
    INVALID_DECAY,
    PUBLISH_THRESHOLD,
    topic_score,
)


def score_params() -> ScoreParams:
    """py-libp2p's parameter object with our decays and thresholds (the weights are ours,
    applied in :class:`Scorer`)."""
    return ScoreParams(
        p2_first_message_deliveries=TopicScoreParams(
            weight=0.0, cap=FIRST_DELIVERY_CAP, decay=FIRST_DELIVERY_DECAY),
        p4_invalid_messages=TopicScoreParams(weight=0.0, cap=0.0, decay=INVALID_DECAY),
        publish_threshold=PUBLISH_THRESHOLD,
        gossip_threshold=GOSSIP_THRESHOLD,
        graylist_threshold=GRAYLIST_THRESHOLD,
        accept_px_threshold=0.0,
    )


class Scorer(PeerScorer):
    """A drop-in for GossipSub's ``scorer`` attribute."""

    def __init__(self) -> None:
        super().__init__(score_params())

    # pubsub calls this for every failed validation; see the module docstring.
    def on_invalid_message(self, peer: ID, topic: str) -> None:
        pass

    def record_invalid(self, peer: ID, topic: str) -> None:
        """Our validator rejected a message ``peer`` forwarded on ``topic`` (PEER-2)."""
        self.invalid_messages[peer][topic] += 1.0

    def topic_score(self, peer: ID, topic: str) -> float:
        # Look up without inserting: the counters are defaultdicts.
        first = self.first_message_deliveries[peer][topic] if (
            peer in self.first_message_deliveries
            and topic in self.first_message_deliveries[peer]) else 0.0
        invalid = self.invalid_messages[peer][topic] if (
            peer in self.invalid_messages and topic in self.invalid_messages[peer]) else 0.0
        return topic_score(topic, first, invalid)

    def score(self, peer: ID, topics: list[str]) -> float:
        del topics  # the score is over every topic the peer has counters on
        seen: set[str] = set()
        if peer in self.first_message_deliveries:
            seen |= set(self.first_message_deliveries[peer])
        if peer in self.invalid_messages:
            seen |= set(self.invalid_messages[peer])
        return sum(self.topic_score(peer, t) for t in seen)

    def allow_publish(self, peer: ID, topics: list[str]) -> bool:
        return self.score(peer, topics) >= self.params.graylist_threshold

    def allow_gossip(self, peer: ID, topics: list[str]) -> bool:
        return self.score(peer, topics) >= self.params.gossip_threshold

    def is_graylisted(self, peer: ID, topics: list[str]) -> bool:
        return self.score(peer, topics) < self.params.graylist_threshold

    def allow_px_from(self, peer: ID, topics: list[str]) -> bool:
        return self.score(peer, topics) >= self.params.accept_px_threshold


def gate_gossip(router: GossipSub, scorer: Scorer) -> None:
    """Make ``router`` ignore IHAVE and IWANT from peers below the gossip threshold."""
    for name in ("handle_ihave", "handle_iwant"):
        handle = getattr(router, name)

        async def gated(msg: Any, sender: ID, handle: Any = handle) -> None:
            if scorer.allow_gossip(sender, []):
                await handle(msg, sender)

        setattr(router, name, gated)


def flood_own_messages(router: GossipSub, scorer: Scorer) -> None:
    """GossipSub v1.1 flood publishing (go-libp2p's default; py-libp2p lacks it): a message
    the node publishes itself goes to every peer on the topic that the publish gate admits,
    not only to its mesh, so it reaches its neighbours in one hop. Relayed messages still
    go to the mesh."""
    pick = router._get_peers_to_send

    def peers_to_send(topic_ids: Any, msg_forwarder: ID, origin: ID,
                      msg_id: bytes | None = None) -> set[ID]:
        chosen = set(pick(topic_ids, msg_forwarder, origin, msg_id))
        ps = router.pubsub
        if ps is not None and origin == msg_forwarder == ps.my_id:
            for topic in topic_ids:
                chosen.update(p for p in ps.peer_topics.get(topic, ())
                              if p != ps.my_id and scorer.allow_publish(p, [topic]))
        return chosen

    router._get_peers_to_send = peers_to_send  # type: ignore[method-assign]
