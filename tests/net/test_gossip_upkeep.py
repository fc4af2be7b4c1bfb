"""Subscriptions are re-announced to peers with a new pubsub stream only (RESUBSCRIBE_WINDOW_S)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from p2pnode.net.gossip import RESUBSCRIBE_WINDOW_S, Libp2pGossip


class Clock:
    t = 1000.0

    def __call__(self) -> float:
        return self.t


def gossip(peers: dict[Any, Any], clock: Clock) -> Libp2pGossip:
    stack: Any = SimpleNamespace(peer_id="me", pubsub=SimpleNamespace(peers=peers))
    return Libp2pGossip(stack, clock=clock)


def test_new_streams_are_fresh_for_the_window_only() -> None:
    clock = Clock()
    a, b = object(), object()
    peers = {"A": a}
    g = gossip(peers, clock)
    assert g.fresh_streams() == ["A"]
    clock.t += RESUBSCRIBE_WINDOW_S - 1
    peers["B"] = b
    assert sorted(g.fresh_streams()) == ["A", "B"]
    clock.t += 1
    assert g.fresh_streams() == ["B"]  # A's stream is a minute old: never again
    clock.t += RESUBSCRIBE_WINDOW_S
    assert g.fresh_streams() == []


def test_a_reconnected_peer_is_fresh_again_and_gone_peers_are_forgotten() -> None:
    clock = Clock()
    peers: dict[Any, Any] = {"A": object()}
    g = gossip(peers, clock)
    g.fresh_streams()
    clock.t += 2 * RESUBSCRIBE_WINDOW_S
    assert g.fresh_streams() == []
    peers["A"] = object()  # the same PeerID over a new stream (a restart)
    assert g.fresh_streams() == ["A"]
    del peers["A"]
    assert g.fresh_streams() == []
    assert g._streams == {}
