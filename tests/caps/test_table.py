"""CapTable: latest seq wins, entries leave when their TTL runs out (spec 02 §4)."""

from __future__ import annotations

from p2pnode.caps.table import CapTable
from tests.caps.ads import NOW_MS, make_ad

P1, P2 = "12D3KooWpeer1", "12D3KooWpeer2"


def test_empty_table() -> None:
    t = CapTable()
    assert len(t) == 0
    assert t.held_seq(P1) is None
    assert t.get(P1) is None
    assert P1 not in t
    assert list(t.live(NOW_MS)) == []
    assert t.expire(NOW_MS) == []


def test_latest_seq_wins() -> None:
    t = CapTable()
    assert t.update(P1, make_ad(seq=5, agent="five"), NOW_MS)
    assert t.held_seq(P1) == 5
    assert not t.update(P1, make_ad(seq=3, agent="three"), NOW_MS + 1)
    assert not t.update(P1, make_ad(seq=5, agent="five again"), NOW_MS + 2)
    entry = t.get(P1)
    assert entry is not None and entry.ad.agent == "five" and entry.received_ms == NOW_MS
    assert t.update(P1, make_ad(seq=6, agent="six"), NOW_MS + 3)
    entry = t.get(P1)
    assert entry is not None and entry.ad.agent == "six" and entry.received_ms == NOW_MS + 3
    assert len(t) == 1


def test_peers_are_independent() -> None:
    t = CapTable()
    assert t.update(P1, make_ad(seq=100), NOW_MS)
    assert t.update(P2, make_ad(seq=1), NOW_MS)
    assert (t.held_seq(P1), t.held_seq(P2)) == (100, 1)
    assert P1 in t and P2 in t and len(t) == 2


def test_expiry_at_ts_plus_ttl() -> None:
    t = CapTable()
    t.update(P1, make_ad(ts=NOW_MS, ttl=10), NOW_MS)
    t.update(P2, make_ad(ts=NOW_MS, ttl=20), NOW_MS)
    end1 = NOW_MS + 10_000
    assert [e.peer_id for e in t.live(end1 - 1)] == [P1, P2]
    assert t.expire(end1 - 1) == []
    # live() hides an expired entry before expire() removes it.
    assert [e.peer_id for e in t.live(end1)] == [P2]
    assert P1 in t
    assert t.expire(end1) == [P1]
    assert P1 not in t and t.held_seq(P1) is None
    assert t.expire(NOW_MS + 20_000) == [P2]
    assert len(t) == 0


def test_after_expiry_any_seq_is_accepted_again() -> None:
    # Expiry forgets the seq: a restarted peer whose counter went back is learned again.
    t = CapTable()
    t.update(P1, make_ad(seq=9, ts=NOW_MS, ttl=10), NOW_MS)
    t.expire(NOW_MS + 10_000)
    assert t.update(P1, make_ad(seq=1, ts=NOW_MS + 10_000), NOW_MS + 10_000)
    assert t.held_seq(P1) == 1


def test_a_newer_ad_extends_the_lifetime() -> None:
    t = CapTable()
    t.update(P1, make_ad(seq=1, ts=NOW_MS, ttl=10), NOW_MS)
    t.update(P1, make_ad(seq=2, ts=NOW_MS + 5_000, ttl=10), NOW_MS + 5_000)
    assert t.expire(NOW_MS + 10_000) == []
    assert t.expire(NOW_MS + 15_000) == [P1]


def test_a_full_table_admits_new_signers_only_when_preferred() -> None:
    from p2pnode.caps.table import CapTable
    from tests.caps.ads import make_ad as _ad

    table = CapTable(max_entries=3)
    for i, p in enumerate(("a", "b", "c")):
        assert table.update(p, _ad(seq=1, ttl=100 + i), 0)
    nobody: set[str] = set()
    connected = {"d", "b"}
    assert not table.admits("d", nobody.__contains__)
    assert not table.update("d", _ad(seq=1), 0, nobody.__contains__)
    assert table.admits("a") and table.update("a", _ad(seq=2, ttl=50), 0)  # held: updated
    # "d" is connected: it replaces the not-connected entry that expires first ("a").
    assert table.admits("d", connected.__contains__)
    assert table.update("d", _ad(seq=1), 0, connected.__contains__)
    assert "a" not in table and {"b", "c", "d"} == {e.peer_id for e in table.live(0)}
    # With only connected signers left to evict, nobody new gets in.
    assert not table.update("e", _ad(seq=1), 0, {"b", "c", "d", "e"}.__contains__)
    assert len(table) == 3
