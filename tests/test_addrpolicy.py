"""The address policy for addresses taken from ads (p2pnode/addrpolicy.py, ADDR-1..6)."""

from __future__ import annotations

import pytest

from p2pnode.addrpolicy import (
    DIAL_BURST,
    MAX_AD_ADDRS,
    AddrDrop,
    DialBudget,
    check_addr,
    filter_ad_addrs,
    private_addrs_allowed,
)

PUBLIC = ["/ip4/8.8.8.8/tcp/4001", "/ip4/1.2.3.4/tcp/1", "/ip6/2606:4700::1/tcp/65535",
          "/ip6/::ffff:8.8.4.4/tcp/4001"]
PRIVATE = ["/ip4/127.0.0.1/tcp/4001", "/ip4/10.1.2.3/tcp/4001", "/ip4/192.168.1.1/tcp/22",
           "/ip4/172.16.0.1/tcp/80", "/ip4/169.254.169.254/tcp/80", "/ip4/100.64.0.1/tcp/1",
           "/ip6/::1/tcp/4001", "/ip6/fe80::1/tcp/4001", "/ip6/fd00::1/tcp/4001",
           "/ip6/::ffff:10.0.0.1/tcp/4001", "/ip4/192.0.2.1/tcp/4001"]
NOT_UNICAST = ["/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/4001", "/ip4/224.0.0.1/tcp/4001",
               "/ip4/239.1.2.3/tcp/4001", "/ip6/ff02::1/tcp/4001",
               "/ip4/255.255.255.255/tcp/4001", "/ip4/240.0.0.1/tcp/4001"]
MALFORMED = ["", "/", "8.8.8.8:4001", "/ip4/8.8.8.8", "/ip4/8.8.8.8/tcp", "/ip4/8.8.8.8/tcp/0",
             "/ip4/8.8.8.8/tcp/65536", "/ip4/8.8.8.8/tcp/-1", "/ip4/8.8.8.8/tcp/04001",
             "/ip4/8.8.8.8/tcp/\uff14\uff10\uff10\uff11", "/ip4/8.8.8.8/udp/4001",
             "/ip4/8.8.8.8/udp/4001/quic-v1",
             "/ip4/8.8.8.8/tcp/4001/ws", "/ip4/8.8.8.8/tcp/4001/p2p/12D3KooWabc",
             "/dns4/example.com/tcp/4001", "/dns/localhost/tcp/4001", "/ip4/8.8.8/tcp/1",
             "/ip4/::1/tcp/4001", "/ip6/8.8.8.8/tcp/4001", "/ip4/8.8.8.8/tcp/1/",
             "/ip4/008.8.8.8/tcp/1", "ip4/8.8.8.8/tcp/1", "/ip6/fe80::1%eth0/tcp/1"]


@pytest.mark.parametrize("addr", PUBLIC)
def test_public_tcp_addresses_are_dialled(addr: str) -> None:
    assert check_addr(addr, allow_private=False) is None
    assert check_addr(addr, allow_private=True) is None


@pytest.mark.parametrize("addr", PRIVATE)
def test_private_ranges_only_where_the_network_allows_them(addr: str) -> None:
    assert check_addr(addr, allow_private=False) is AddrDrop.PRIVATE
    assert check_addr(addr, allow_private=True) is None


@pytest.mark.parametrize("addr", NOT_UNICAST)
def test_unspecified_multicast_broadcast_reserved_are_never_dialled(addr: str) -> None:
    assert check_addr(addr, allow_private=True) is AddrDrop.NOT_UNICAST


@pytest.mark.parametrize("addr", MALFORMED)
def test_malformed_and_non_tcp_addresses_are_dropped(addr: str) -> None:
    assert check_addr(addr, allow_private=True) is AddrDrop.MALFORMED


def test_an_ad_contributes_at_most_max_addrs_in_its_order() -> None:
    addrs = [f"/ip4/8.8.8.{i}/tcp/4001" for i in range(1, 13)]
    got = filter_ad_addrs(["/ip4/10.0.0.1/tcp/1", *addrs], allow_private=False)
    assert got.dialable == addrs[:MAX_AD_ADDRS - 1]
    assert got.dropped == [AddrDrop.PRIVATE] + [AddrDrop.TOO_MANY] * (13 - MAX_AD_ADDRS)
    twice = filter_ad_addrs([PUBLIC[0], PUBLIC[0]], allow_private=False)
    assert twice.dialable == [PUBLIC[0]] and twice.dropped == []


def test_private_addrs_setting() -> None:
    loop = ["/ip4/127.0.0.1/tcp/0"]
    anywhere = ["/ip4/0.0.0.0/tcp/4001"]
    lan_boot = ["/ip4/192.168.1.5/tcp/4001/p2p/12D3KooWabc"]
    public_boot = ["/ip4/8.8.8.8/tcp/4001/p2p/12D3KooWabc"]
    assert private_addrs_allowed("allow", anywhere, public_boot)
    assert not private_addrs_allowed("deny", loop, lan_boot)
    # auto: a loopback or LAN node (the test suite, a devnet) dials private addresses ...
    assert private_addrs_allowed("auto", loop, [])
    assert private_addrs_allowed("auto", anywhere, lan_boot)
    # ... a node bootstrapped from the internet, or with nothing to go by, does not.
    assert not private_addrs_allowed("auto", loop, public_boot)
    assert not private_addrs_allowed("auto", anywhere, [*lan_boot, *public_boot])
    assert not private_addrs_allowed("auto", anywhere, [])
    with pytest.raises(ValueError):
        private_addrs_allowed("yes", loop, [])


def test_dial_budget_bounds_rate_and_concurrency() -> None:
    budget = DialBudget(rate=1.0, burst=DIAL_BURST, concurrency=2)
    assert [budget.try_start(0.0) for _ in range(3)] == [True, True, False]  # concurrency
    budget.finished()
    budget.finished()
    assert [budget.try_start(0.0) for _ in range(3)] == [True, True, False]  # burst of 4 spent
    budget.finished()
    budget.finished()
    assert not budget.try_start(0.5)
    assert budget.next_token_in(0.5) == pytest.approx(0.5)
    assert budget.try_start(1.0)
    # Over a long run: the burst plus one dial per second, however often it is asked.
    budget = DialBudget(rate=1.0, burst=4, concurrency=10_000)
    started = sum(budget.try_start(t / 10) for t in range(1000))
    assert 4 + 99 <= started <= 4 + 100
