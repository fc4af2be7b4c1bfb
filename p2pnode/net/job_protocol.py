"""The libp2p side of ``/p2pnode/<net>/job/1`` (spec/04-jobs.md §5): one exchange per
stream, each message one frame holding a signed envelope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID

from p2pnode.identity import public_key_from_peer_id
from p2pnode.jobs.model import MAX_FRAME
from p2pnode.net.limits import StreamLimiter, framed_handler
from p2pnode.net.streams import FramedStream
from p2pnode.ports import TransportError
from p2pnode.ratelimit import StreamLimits
from p2pnode.wire.reasons import Reason

EXCHANGE_TIMEOUT_S = 10.0
# XCH-12: inbound /job/1 streams of one peer open at once, of all peers, and the rate at
# which one peer may open new ones.
JOB_STREAMS_PER_PEER = 16
MAX_JOB_STREAMS = 256
JOB_STREAM_RATE = 20.0
JOB_STREAM_BURST = 40
JOB_STREAM_LIMITS = StreamLimits(per_peer=JOB_STREAMS_PER_PEER, total=MAX_JOB_STREAMS,
                                 rate=JOB_STREAM_RATE, burst=JOB_STREAM_BURST)


def job_protocol_id(net: str) -> TProtocol:
    return TProtocol(f"/p2pnode/{net}/job/1")


def remote_public_key(stream: Any) -> bytes:
    """The Ed25519 key the Noise handshake authenticated for this stream's peer."""
    peer: ID = stream.muxed_conn.peer_id
    return public_key_from_peer_id(peer.to_bytes())


Handler = Callable[[FramedStream, bytes, bytes], Awaitable[None]]
"""``handle(framed, remote_key, first)``: ``first`` is the first frame; ``remote_key`` the
Ed25519 key Noise authenticated for the stream's peer. The handler opens the frame
(``p2pnode.jobs.messages.route``: XCH-2, XCH-3) and answers nothing to what fails."""


def make_job_handler(net: str, handle: Handler, on_reject: Callable[[Reason], None],
                     limiter: StreamLimiter | None = None) -> Any:
    """The stream handler of ``/p2pnode/<net>/job/1`` for ``host.set_stream_handler``.

    A stream over the limits of ``limiter`` (default: ``JOB_STREAM_LIMITS``) is reset
    unread (XCH-12); otherwise its first frame, read within EXCHANGE_TIMEOUT_S, goes to
    ``handle``. A frame that cannot be read is counted with ``on_reject(reason)`` and the
    stream closed without an answer. No error escapes into the host.
    """
    gate = limiter if limiter is not None else StreamLimiter(JOB_STREAM_LIMITS)

    async def run(framed: FramedStream, stream: Any) -> None:
        remote = remote_public_key(stream)
        await handle(framed, remote, await framed.receive(EXCHANGE_TIMEOUT_S))

    return framed_handler(gate, MAX_FRAME, run, on_reject)


async def open_exchange(host: Any, peer_id: str, net: str) -> FramedStream:
    """A new ``/job/1`` stream; TransportError if none can be had in EXCHANGE_TIMEOUT_S."""
    try:
        with trio.fail_after(EXCHANGE_TIMEOUT_S):
            stream = await host.new_stream(ID.from_base58(peer_id), [job_protocol_id(net)])
    except (trio.TooSlowError, BaseLibp2pError, OSError, ValueError) as e:
        raise TransportError(f"no stream to {peer_id}: {e}") from e
    return FramedStream(stream, MAX_FRAME)


async def request(host: Any, peer_id: str, net: str, payload: bytes,
                  timeout: float = EXCHANGE_TIMEOUT_S) -> bytes:
    """Send one message, return the one reply."""
    framed = await open_exchange(host, peer_id, net)
    try:
        await framed.send(payload)
        return await framed.receive(timeout)
    finally:
        await framed.close()
