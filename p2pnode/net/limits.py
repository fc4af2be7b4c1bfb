"""Per-peer and total bounds on the inbound streams of a protocol (spec 04 XCH-12, spec 05
BLOB-15): the trio side of :class:`p2pnode.ratelimit.StreamAdmission`.

A stream over a bound is reset before anything is read from it, so an unwanted stream costs
the node the muxer's bookkeeping and nothing else: no buffer, no timer, no signature.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from p2pnode.ratelimit import StreamAdmission, StreamLimits
from p2pnode.wire.reasons import Reason

# Resetting a refused stream never waits longer than this.
RESET_TIMEOUT_S = 2.0

Clock = Callable[[], float]


def stream_peer(stream: Any) -> str:
    """The remote PeerID of a py-libp2p stream, as text ("?" for a stream without one)."""
    return str(getattr(getattr(stream, "muxed_conn", None), "peer_id", "?"))


async def reset_stream(stream: Any) -> None:
    """Reset ``stream`` even inside a cancelled scope; never raises."""
    with trio.CancelScope(deadline=trio.current_time() + RESET_TIMEOUT_S, shield=True):
        try:
            await stream.reset()
        except Exception:  # the peer may have closed or reset it first; nothing left to do
            pass


class StreamLimiter:
    """Admits the inbound streams of one protocol within ``limits``.

    ``clock`` is a monotonic clock in seconds; the default is trio's, so a test's
    ``MockClock`` drives the token buckets too.
    """

    def __init__(self, limits: StreamLimits, clock: Clock | None = None) -> None:
        self.limits = limits
        self.admission = StreamAdmission(limits)
        self._clock: Clock = clock or trio.current_time

    async def serve(self, stream: Any, handle: Callable[[Any], Awaitable[None]]) -> bool:
        """Run ``handle(stream)`` if the stream is within the bounds and return True; else
        reset it at once and return False (the caller counts it as ``rate_limited``)."""
        peer = stream_peer(stream)
        if not self.admission.admit(peer, self._clock()):
            await reset_stream(stream)
            return False
        try:
            await handle(stream)
        finally:
            self.admission.release(peer)
        return True

    def open_streams(self, peer: str) -> int:
        """Streams of ``peer`` (text PeerID) being served now."""
        return self.admission.open_streams(peer)

    @property
    def total(self) -> int:
        """Streams of all peers being served now."""
        return self.admission.total


def framed_handler(gate: StreamLimiter, max_frame: int,
                   run: Callable[[Any, Any], Awaitable[None]],
                   on_reject: Callable[[Reason], None]) -> Any:
    """A stream handler for ``host.set_stream_handler``: a stream over ``gate``'s limits is
    reset unread and counted ``rate_limited``; otherwise ``run(framed, stream)`` gets it as
    a :class:`p2pnode.net.streams.FramedStream` of ``max_frame``, and whatever ends it
    badly is counted with its reason (a frame's, ``truncated`` for a timeout, ``malformed``
    for anything else). The stream is closed after; no error escapes into the host."""
    from p2pnode.net.streams import FramedStream
    from p2pnode.wire.reasons import WireError

    async def exchange(stream: Any) -> None:
        framed = FramedStream(stream, max_frame)
        try:
            await run(framed, stream)
        except WireError as e:
            on_reject(e.reason)
        except trio.TooSlowError:
            on_reject(Reason.TRUNCATED)
        except Exception:  # a broken peer must never take the node down
            on_reject(Reason.MALFORMED)
        finally:
            await framed.close()

    async def handler(stream: Any) -> None:
        if not await gate.serve(stream, exchange):
            on_reject(Reason.RATE_LIMITED)

    return handler
