"""The libp2p side of ``/p2pnode/<net>/caps-sync/1`` (spec/02-capabilities.md §9): the
asking peer opens a stream and sends nothing; the answering peer writes its held ads, one
frame each, and closes. The rules are ``p2pnode.caps.sync``'s; this module only moves bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID

from p2pnode.caps.sync import (
    MAX_SYNC_STREAMS,
    SYNC_IDLE_TIMEOUT_S,
    SYNC_STREAM_BURST,
    SYNC_STREAM_MAX_S,
    SYNC_STREAM_RATE,
    SYNC_STREAMS_PER_PEER,
    AnswerReader,
)
from p2pnode.net.limits import StreamLimiter, reset_stream, stream_peer
from p2pnode.net.streams import READ_CHUNK
from p2pnode.ratelimit import StreamLimits
from p2pnode.wire.framing import encode_frame
from p2pnode.wire.reasons import Reason

SYNC_STREAM_LIMITS = StreamLimits(per_peer=SYNC_STREAMS_PER_PEER, total=MAX_SYNC_STREAMS,
                                  rate=SYNC_STREAM_RATE, burst=SYNC_STREAM_BURST)

Answer = Callable[[str], list[bytes]]
"""``answer(peer)``: the envelopes to send to ``peer`` (SYNC-3)."""


def caps_sync_protocol_id(net: str) -> TProtocol:
    return TProtocol(f"/p2pnode/{net}/caps-sync/1")


def make_sync_handler(answer: Answer, on_refused: Callable[[], None],
                      limiter: StreamLimiter | None = None) -> Any:
    """The stream handler of ``caps-sync/1``: within the limits of ``limiter`` (SYNC-6),
    write the answer and close; a stream over them is reset unread and ``on_refused()``
    called. Nothing is read from the asking peer, and no error escapes into the host."""
    gate = limiter if limiter is not None else StreamLimiter(SYNC_STREAM_LIMITS)

    async def exchange(stream: Any) -> None:
        payload = b"".join(encode_frame(a) for a in answer(stream_peer(stream)))
        done = False
        with trio.move_on_after(SYNC_STREAM_MAX_S):
            try:
                await stream.write(payload)
                done = True
            except (BaseLibp2pError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the asking peer went away: nothing more to do
        if done:
            try:
                with trio.move_on_after(SYNC_IDLE_TIMEOUT_S):
                    await stream.close()
                    return
            except Exception:  # closing a reset stream raises; nothing left to do
                return
        await reset_stream(stream)

    async def handler(stream: Any) -> None:
        if not await gate.serve(stream, exchange):
            on_refused()

    return handler


async def pull_held_ads(host: Any, peer_id: str, net: str,
                        reader: AnswerReader | None = None) -> tuple[list[bytes], Reason | None]:
    """Ask ``peer_id`` for its held ads: the ads read, and why the answer was cut short
    (None when it ended cleanly). Every wait is bounded (SYNC-4)."""
    reader = reader or AnswerReader()
    ads: list[bytes] = []
    stream: Any = None
    try:
        with trio.fail_after(SYNC_STREAM_MAX_S):
            with trio.fail_after(SYNC_IDLE_TIMEOUT_S):
                stream = await host.new_stream(ID.from_base58(peer_id),
                                               [caps_sync_protocol_id(net)])
            while True:
                try:
                    with trio.fail_after(SYNC_IDLE_TIMEOUT_S):
                        chunk = await stream.read(READ_CHUNK)
                except (BaseLibp2pError, trio.BrokenResourceError, trio.ClosedResourceError):
                    chunk = b""  # py-libp2p signals the end of a stream by raising
                if not chunk:
                    reader.finish()
                ads.extend(reader.feed(chunk))
                if not chunk or reader.error is not None:
                    return ads, None if reader.error is None else reader.error.reason
    except trio.TooSlowError:
        return ads, Reason.TRUNCATED
    except (BaseLibp2pError, OSError, ValueError):
        return ads, Reason.NOT_FOUND  # no stream: the peer does not speak the protocol
    finally:
        if stream is not None:
            await _close(stream)


async def _close(stream: Any) -> None:
    with trio.move_on_after(SYNC_IDLE_TIMEOUT_S):
        try:
            await stream.close()
        except Exception:  # closing a reset stream raises; nothing left to do
            pass
