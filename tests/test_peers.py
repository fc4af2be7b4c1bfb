"""The peer policy core (spec 03 §4.1, §5.5): score, bans, which connections to close."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pnode.config import Config, ConfigError, load_config
from p2pnode.peers import (
    GOSSIP_THRESHOLD,
    GRAYLIST_THRESHOLD,
    MAX_CONNECTIONS,
    PUBLISH_THRESHOLD,
    BanList,
    Close,
    CloseReason,
    ConnLimits,
    PeerConns,
    penalises_forwarder,
    plan_closes,
    topic_name,
    topic_score,
    topic_weight,
)
from p2pnode.wire.reasons import ACCEPT, Ignore, Reason, Reject

CAPS = "/p2pnode/devnet/caps/1"


def test_topic_names_and_weights() -> None:
    assert topic_name(CAPS) == "caps/1"
    assert topic_weight(CAPS) == 1.0
    assert topic_weight("/p2pnode/devnet/ledger/1") == 1.0
    assert topic_weight("/p2pnode/devnet/anchors/1") == 0.5
    assert topic_weight("/other/topic") == 0.0
    assert topic_score("/other/topic", 5, 100) == 0.0


def test_thresholds_are_ordered_as_gossipsub_requires() -> None:
    assert 0 > GOSSIP_THRESHOLD > PUBLISH_THRESHOLD > GRAYLIST_THRESHOLD


def test_first_deliveries_are_capped_and_invalid_messages_squared() -> None:
    assert topic_score(CAPS, 3, 0) == 3.0
    assert topic_score(CAPS, 1000, 0) == 10.0
    assert topic_score(CAPS, 0, 4) == -16.0


def test_a_handful_of_invalid_messages_graylists_even_a_useful_peer() -> None:
    # The best an honest-looking peer can earn is the P2 cap; ten rejects outweigh it.
    assert topic_score(CAPS, 1000, 10) < GRAYLIST_THRESHOLD
    # One stray reject does not cost a useful peer its gossip.
    assert topic_score(CAPS, 1000, 1) > GOSSIP_THRESHOLD
    assert topic_score(CAPS, 0, 3) > GOSSIP_THRESHOLD


def test_a_ban_lasts_ban_s() -> None:
    bans = BanList(ban_s=10)
    assert bans.ban("a", 100.0)
    assert not bans.ban("a", 101.0)  # already banned: not a new ban
    assert bans.is_banned("a", 109.9)
    assert not bans.is_banned("a", 111.1)  # the second ban() renewed it to 111
    assert bans.expire(111.1) == ["a"]
    assert len(bans) == 0


def test_rejects_within_the_window_ban() -> None:
    bans = BanList(rejects_to_ban=5, reject_window_s=10)
    assert not any(bans.on_reject("a", t) for t in (0, 1, 2, 3))
    assert bans.on_reject("a", 4)
    assert bans.is_banned("a", 5)
    assert not bans.on_reject("a", 6)  # banned already: nothing new


def test_rejects_spread_over_more_than_the_window_do_not_ban() -> None:
    bans = BanList(rejects_to_ban=5, reject_window_s=10)
    assert not any(bans.on_reject("a", t * 3.0) for t in range(50))
    assert not bans.is_banned("a", 150)


def test_the_ban_list_is_bounded() -> None:
    bans = BanList(ban_s=100, max_bans=3)
    for i, p in enumerate("abcd"):
        bans.ban(p, float(i))
    assert len(bans) == 3
    assert not bans.is_banned("a", 4)  # the one ending soonest went
    assert all(bans.is_banned(p, 4) for p in "bcd")


def conn(peer: str, since: float, score: float = 0.0, *, ip: str = "127.0.0.1",
         protected: bool = False, n: int = 1) -> PeerConns:
    return PeerConns(peer=peer, ip=ip, since=since, score=score, protected=protected,
                     connections=n)


def test_under_the_limit_nothing_is_closed() -> None:
    peers = [conn(str(i), i) for i in range(4)]
    assert plan_closes(peers, ConnLimits(max_connections=4)) == []


def test_over_the_limit_the_lowest_score_then_the_newest_go_never_a_protected_one() -> None:
    peers = [conn("boot", 0, -5, protected=True), conn("good", 1, 8), conn("old", 2),
             conn("new", 3), conn("bad", 4, -3), conn("lease", 5, -1, protected=True)]
    closes = plan_closes(peers, ConnLimits(max_connections=3))
    assert closes == [Close("bad", CloseReason.OVER_LIMIT), Close("new", CloseReason.OVER_LIMIT),
                      Close("old", CloseReason.OVER_LIMIT)]


def test_protected_peers_are_kept_even_above_the_limit() -> None:
    peers = [conn(str(i), i, protected=True) for i in range(5)]
    assert plan_closes(peers, ConnLimits(max_connections=2)) == []


def test_a_peer_with_several_connections_counts_each() -> None:
    peers = [conn("a", 0, 1, n=3), conn("b", 1)]
    assert plan_closes(peers, ConnLimits(max_connections=3)) == [
        Close("b", CloseReason.OVER_LIMIT)]


def test_banned_peers_are_closed_protected_or_not() -> None:
    peers = [conn("boot", 0, protected=True), conn("x", 1)]
    assert plan_closes(peers, ConnLimits(), banned=["boot"]) == [
        Close("boot", CloseReason.BANNED)]


def test_per_ip_limit_closes_the_newcomers_and_spares_loopback_by_default() -> None:
    public = [conn(f"p{i}", i, ip="203.0.113.7") for i in range(4)]
    other = [conn("q", 9, ip="198.51.100.1")]
    local = [conn(f"l{i}", i, ip="127.0.0.1") for i in range(4)]
    limits = ConnLimits(max_per_ip=2)
    assert plan_closes(public + other + local, limits) == [
        Close("p2", CloseReason.PER_IP), Close("p3", CloseReason.PER_IP)]
    strict = ConnLimits(max_per_ip=2, limit_loopback=True)
    assert {c.peer for c in plan_closes(local, strict)} == {"l2", "l3"}


def test_protected_peers_take_no_per_ip_slot() -> None:
    peers = [conn("boot", 0, ip="203.0.113.7", protected=True),
             conn("a", 1, ip="203.0.113.7"), conn("b", 2, ip="203.0.113.7")]
    assert plan_closes(peers, ConnLimits(max_per_ip=2)) == []


def test_only_rejects_a_relay_could_not_have_made_count_against_it() -> None:
    assert penalises_forwarder(Reject(Reason.MALFORMED))
    assert penalises_forwarder(Reject(Reason.SIGNER_MISMATCH))
    assert not penalises_forwarder(Reject(Reason.EXPIRED))
    assert not penalises_forwarder(Reject(Reason.CLOCK_SKEW))
    assert not penalises_forwarder(Ignore(Reason.RATE_LIMITED))
    assert not penalises_forwarder(ACCEPT)


def test_the_peers_section_of_the_config(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[peers]\nmax_connections = 20\nmax_connections_per_ip = 2\n"
                    "limit_loopback = true\nban_s = 30\n")
    cfg = load_config(path)
    assert (cfg.peers_max_connections, cfg.peers_max_connections_per_ip,
            cfg.peers_limit_loopback, cfg.peers_ban_s) == (20, 2, True, 30.0)
    assert Config().peers_max_connections == MAX_CONNECTIONS
    path.write_text("[peers]\nmax_connections = 0\n")
    with pytest.raises(ConfigError):
        load_config(path)
