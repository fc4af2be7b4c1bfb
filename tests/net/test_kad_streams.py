"""The stream guard of spec 03 §5.3 (KAD-6, KAD-7) over fake streams, in virtual time."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio
import trio.testing
from prometheus_client import CollectorRegistry

from p2pnode.net.kad import Handler, IdleTimeoutStream, KadMetrics, guard_handler
from p2pnode.net.limits import StreamLimiter
from p2pnode.ratelimit import StreamLimits


@dataclass
class _Conn:
    peer_id: str


@dataclass
class FakeStream:
    """A stream whose peer sends one byte every ``every`` seconds, for ever."""

    peer: str
    every: float
    was_reset: bool = False
    muxed_conn: _Conn = field(init=False)

    def __post_init__(self) -> None:
        self.muxed_conn = _Conn(self.peer)

    async def read(self, n: int | None = None) -> bytes:
        await trio.sleep(self.every)
        return b"\x00"

    async def reset(self) -> None:
        self.was_reset = True


async def read_for_ever(stream: IdleTimeoutStream) -> None:
    """A handler that reads until the peer stops, as py-libp2p's do: it takes a failed
    read as the end of the stream."""
    try:
        while await stream.read(1):
            pass
    except trio.TooSlowError:
        return


def counts(metrics: KadMetrics, name: str) -> float:
    return float(getattr(metrics, name).labels(protocol="kad")._value.get())


def guard(limits: StreamLimits) -> tuple[KadMetrics, StreamLimiter, Handler]:
    metrics = KadMetrics(CollectorRegistry())
    limiter = StreamLimiter(limits)
    handler = guard_handler("kad", read_for_ever, limiter, idle_s=10.0, max_s=60.0,
                            metrics=metrics)
    return metrics, limiter, handler


LIMITS = StreamLimits(per_peer=2, total=3, rate=100.0, burst=100)


async def test_an_idle_stream_is_reset_after_the_idle_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    metrics, limiter, handler = guard(LIMITS)
    stream = FakeStream("a", every=1000.0)
    start = trio.current_time()
    await handler(stream)
    assert trio.current_time() - start == 10.0
    assert stream.was_reset and counts(metrics, "streams_timed_out") == 1
    assert limiter.total == 0


async def test_a_trickling_stream_is_reset_at_its_lifetime(
        autojump_clock: trio.testing.MockClock) -> None:
    metrics, limiter, handler = guard(LIMITS)
    stream = FakeStream("a", every=9.0)  # never idle for 10 s
    start = trio.current_time()
    await handler(stream)
    assert trio.current_time() - start == 60.0
    assert stream.was_reset and counts(metrics, "streams_timed_out") == 1
    assert limiter.total == 0


async def test_streams_over_the_per_peer_and_total_bounds_are_reset_unread(
        autojump_clock: trio.testing.MockClock) -> None:
    metrics, limiter, handler = guard(LIMITS)
    of_a = [FakeStream("a", 1000.0) for _ in range(3)]
    of_b = [FakeStream("b", 1000.0) for _ in range(2)]
    streams = of_a + of_b
    async with trio.open_nursery() as nursery:
        # trio starts tasks in no fixed order: let a's streams arrive first, then b's
        for group in (of_a, of_b):
            for s in group:
                nursery.start_soon(handler, s)
            await trio.sleep(1.0)
        assert limiter.open_streams("a") == 2 and limiter.open_streams("b") == 1
        assert counts(metrics, "streams_refused") == 2
    assert [s.was_reset for s in streams] == [True] * 5
    assert counts(metrics, "streams_timed_out") == 3 and limiter.total == 0
