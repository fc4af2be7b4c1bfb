"""Bounds on inbound streams (spec 04 XCH-12, spec 05 BLOB-15), without a network."""

from __future__ import annotations

from p2pnode.ratelimit import StreamAdmission, StreamLimits


def test_per_peer_bound_and_release() -> None:
    gate = StreamAdmission(StreamLimits(per_peer=2, total=10, rate=1.0, burst=100))
    assert gate.admit("a", 0.0) and gate.admit("a", 0.0)
    assert not gate.admit("a", 0.0)
    assert gate.admit("b", 0.0)  # another peer is not held back by a's streams
    assert gate.open_streams("a") == 2 and gate.total == 3
    gate.release("a")
    assert gate.admit("a", 0.0)
    for peer in ("a", "a", "b"):
        gate.release(peer)
    assert gate.open_streams("a") == 0 and gate.total == 0


def test_total_bound() -> None:
    gate = StreamAdmission(StreamLimits(per_peer=5, total=3, rate=1.0, burst=100))
    assert [gate.admit(p, 0.0) for p in "abcd"] == [True, True, True, False]
    gate.release("b")
    assert gate.admit("d", 0.0)


def test_rate_counts_every_stream_asked_about() -> None:
    gate = StreamAdmission(StreamLimits(per_peer=1, total=10, rate=2.0, burst=3))
    assert gate.admit("a", 0.0)
    # Over the concurrency bound: refused, and each attempt spends a token all the same.
    assert not gate.admit("a", 0.0) and not gate.admit("a", 0.0)
    gate.release("a")
    assert not gate.admit("a", 0.0)  # the burst of 3 is spent
    assert gate.admit("a", 0.5)  # 2 per second: one token after half a second
    gate.release("a")
    assert not gate.admit("a", 0.5)


def test_time_comes_from_the_caller() -> None:
    gate = StreamAdmission(StreamLimits(per_peer=100, total=100, rate=1.0, burst=1))
    assert gate.admit("a", 1000.0)
    assert not gate.admit("a", 1000.9)
    assert gate.admit("a", 1001.0)


def test_available_reads_the_bucket_without_spending_it() -> None:
    from p2pnode.ratelimit import PeerRateLimiter

    lim = PeerRateLimiter(rate=10.0, burst=5)
    assert lim.available("a", 0.0) == 5.0  # never seen: the whole burst
    for _ in range(5):
        assert lim.allow("a", 0.0)
    assert lim.available("a", 0.0) == 0.0 and not lim.allow("a", 0.0)
    assert lim.available("a", 0.2) == 2.0
    assert lim.available("a", 0.2) == 2.0  # reading spends nothing
    assert lim.available("a", 100.0) == 5.0  # capped at the burst
    assert lim.allow("a", 0.2) and lim.available("a", 0.2) == 1.0
