"""Dialling peers with a deadline; DHT routing-table upkeep after a connection."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import trio
from libp2p.peer.peerinfo import info_from_p2p_addr
from multiaddr import Multiaddr

log = logging.getLogger("p2pnode.net")


async def dial(stack: Any, addr: str, timeout: float = 5.0) -> tuple[bool, str]:
    """Connect to ``/ip4/.../tcp/.../p2p/<id>``; return (ok, error text)."""
    try:
        info = info_from_p2p_addr(Multiaddr(addr))
    except Exception as e:  # multiaddr raises several types for bad input
        return False, f"bad multiaddr: {e}"
    guard = getattr(stack, "guard", None)
    if guard is not None and guard.refuse_dial(info.peer_id.to_base58()):  # PEER-6
        return False, "banned"
    try:
        with trio.fail_after(timeout):
            await stack.host.connect(info)
            await stack.dht.add_peer(info.peer_id)
    except trio.TooSlowError:
        return False, "timeout"
    except Exception as e:  # a refused or failed dial must never stop the node
        return False, f"{type(e).__name__}: {e}"
    return True, ""


async def repair_pubsub_peers(stack: Any, timeout: float = 3.0) -> int:
    """Register connected peers that pubsub lost track of; return how many were repaired.

    py-libp2p 0.8.1: when a peer reconnects (a restart with the same key) while its old
    connection is still being torn down, pubsub skips the new connection (the PeerID is
    still in ``pubsub.peers``) and then drops the peer when the old stream dies, so the
    peer never hears from us again. ``ensure_peer_stream`` opens the missing stream.
    """
    ps = stack.pubsub
    repaired = 0
    for peer in list(stack.host.get_connected_peers()):
        if peer in ps.peers:
            continue
        try:
            with trio.move_on_after(timeout):
                if await ps.ensure_peer_stream(peer, timeout=timeout):
                    repaired += 1
        except Exception as e:  # a peer that cannot take a stream is left alone
            log.debug("pubsub repair of %s failed: %s", peer, e)
    return repaired


async def reannounce_subscriptions(stack: Any, peers: Iterable[Any]) -> int:
    """Send our topic subscriptions again to ``peers`` (libp2p IDs); return how many
    peers were sent them.

    The same py-libp2p reconnect race as above can also drop *our* subscription from a
    peer's view (it processes our hello, then forgets us with the old connection), and
    nothing in GossipSub would ever resend it. Re-announcing is idempotent for receivers.
    """
    ps = stack.pubsub
    topics = list(ps.subscribed_topics_receive)
    sent = 0
    for peer in peers:
        queue = ps.peer_queues.get(peer)
        if queue is None:
            continue
        for topic in topics:
            packet, subopt = ps._build_announce_rpc(topic, True)
            ps._enqueue_or_retry_announce(peer, queue, packet, subopt)
        sent += 1
    return sent


async def reconnect(stack: Any, peer_id: str, addrs: list[str], timeout: float = 5.0) -> bool:
    """Drop every connection to ``peer_id`` and dial it afresh.

    A peer that restarted with the same key can leave a dead connection behind that
    py-libp2p still opens streams on (they hang until their deadline); a clean dial to its
    current address gets a working one.
    """
    from libp2p.peer.id import ID

    try:
        with trio.move_on_after(timeout):
            await stack.host.disconnect(ID.from_base58(peer_id))
    except Exception as e:  # nothing to drop, or it is already gone
        log.debug("disconnect %s: %s", peer_id, e)
    for addr in addrs:
        ok, _ = await dial(stack, f"{addr}/p2p/{peer_id}", timeout=timeout)
        if ok:
            return True
    return False
