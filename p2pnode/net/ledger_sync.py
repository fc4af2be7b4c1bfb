"""The libp2p side of ``/p2pnode/<net>/sync/1`` (spec 07 §6): one reconciliation session
per stream, each message one frame. The rules are ``p2pnode.ledger.reconcile``'s and the
session's order is ``p2pnode.services.ledger``'s; this module only moves bytes, within the
stream limits of RCN-9."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID

from p2pnode.net.limits import StreamLimiter, framed_handler, stream_peer
from p2pnode.net.streams import FramedStream
from p2pnode.ports import Exchange, TransportError
from p2pnode.ratelimit import StreamLimits
from p2pnode.wire.reasons import Reason

OPEN_TIMEOUT_S = 10.0
# RCN-9: inbound sessions of one peer at once, of all peers, and how often one peer may
# start one.
SYNC_SESSIONS_PER_PEER = 1
MAX_SYNC_SESSIONS = 8
SYNC_SESSION_RATE = 0.5
SYNC_SESSION_BURST = 4
SYNC_LIMITS = StreamLimits(per_peer=SYNC_SESSIONS_PER_PEER, total=MAX_SYNC_SESSIONS,
                           rate=SYNC_SESSION_RATE, burst=SYNC_SESSION_BURST)

SyncHandler = Callable[[Exchange, str], Awaitable[None]]
"""``handle(framed, peer)``: serve one session of ``peer`` (its PeerID)."""


def sync_protocol_id(net: str) -> TProtocol:
    return TProtocol(f"/p2pnode/{net}/sync/1")


def make_sync_handler(handle: SyncHandler, max_frame: int,
                      on_reject: Callable[[Reason], None],
                      limiter: StreamLimiter | None = None) -> Any:
    """The stream handler of ``sync/1``: a stream over the limits is reset unread and
    counted ``rate_limited``; a session that fails is counted with its reason. No error
    escapes into the host."""
    gate = limiter if limiter is not None else StreamLimiter(SYNC_LIMITS)

    async def run(framed: FramedStream, stream: Any) -> None:
        await handle(framed, stream_peer(stream))

    return framed_handler(gate, max_frame, run, on_reject)


async def open_sync(host: Any, peer_id: str, net: str, max_frame: int) -> FramedStream:
    """A new ``sync/1`` stream; TransportError if none can be had in OPEN_TIMEOUT_S."""
    try:
        with trio.fail_after(OPEN_TIMEOUT_S):
            stream = await host.new_stream(ID.from_base58(peer_id), [sync_protocol_id(net)])
    except (trio.TooSlowError, BaseLibp2pError, OSError, ValueError) as e:
        raise TransportError(f"no sync stream to {peer_id}: {e}") from e
    return FramedStream(stream, max_frame)


class Libp2pSyncNet:
    """:class:`p2pnode.ports.SyncNet` over a py-libp2p host."""

    def __init__(self, host: Any, net: str, max_frame: int,
                 on_reject: Callable[[Reason], None]) -> None:
        self.host = host
        self.net = net
        self.max_frame = max_frame
        self.on_reject = on_reject

    def serve_sync(self, handle: SyncHandler) -> None:
        self.host.set_stream_handler(sync_protocol_id(self.net),
                                     make_sync_handler(handle, self.max_frame, self.on_reject))

    async def open_sync(self, peer: str) -> FramedStream:
        return await open_sync(self.host, peer, self.net, self.max_frame)
