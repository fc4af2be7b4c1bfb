"""The launcher starts nodes in a rolling wave: node 0 first, then at most
``concurrency`` starting at once, each within a timeout that grows with N. The processes
are stand-ins; no node runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from p2pnode.testnet import launcher
from p2pnode.testnet.launcher import NodePorts, NodeProc


class _Proc:
    pid = 1
    returncode = None

    def poll(self) -> int | None:
        return None


def _nodes(n: int, tmp: Path) -> list[NodeProc]:
    return [NodeProc(index=i, home=tmp / str(i), peer_id=f"peer{i}",
                     ports=NodePorts(listen=1000 + i, api=2000 + i, metrics=3000 + i))
            for i in range(n)]


def test_nodes_start_in_a_bounded_wave_after_node_0(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    polls: dict[int, int] = {}
    starting: set[int] = set()
    most = 0
    order: list[int] = []

    boots: dict[int, list[str]] = {}
    pools: dict[int, set[str]] = {}  # the addresses of the nodes serving at each spawn

    def start(node: NodeProc, boot: list[str] | None, lifeline: int | None = None) -> None:
        nonlocal most
        assert (boot is None) == (node.index == 0)
        boots[node.index] = list(boot or [])
        pools[node.index] = {f"/ip4/127.0.0.1/tcp/{1000 + i}/p2p/peer{i}"
                             for i, n in polls.items() if n >= 3}
        node.proc = _Proc()  # type: ignore[assignment]
        node.spawned_at = launcher.time.monotonic()
        order.append(node.index)
        starting.add(node.index)
        most = max(most, len(starting))

    def poll(node: NodeProc) -> dict[str, Any] | None:
        polls[node.index] = polls.get(node.index, 0) + 1
        if polls[node.index] < 3:  # every node takes three looks to come up
            return None
        starting.discard(node.index)
        node.status = {"addrs": [f"/ip4/127.0.0.1/tcp/{node.ports.listen}/p2p/x"]}
        return node.status

    monkeypatch.setattr(launcher, "_start", start)
    monkeypatch.setattr(launcher, "_poll", poll)
    monkeypatch.setattr(launcher, "START_POLL_S", 0.0)
    nodes = _nodes(12, tmp_path)
    boot = launcher.start_network(nodes, concurrency=3)
    assert boot == "/ip4/127.0.0.1/tcp/1000/p2p/peer0"
    assert order == list(range(12)) and most == 3
    # three of the nodes serving when it is spawned (node 0 among them), or all of them
    # while fewer serve; never the same one twice, never a node still starting
    assert boots[1] == [boot]
    for i in range(1, 12):
        assert set(boots[i]) <= pools[i] and boot in pools[i]
        assert len(boots[i]) == len(set(boots[i])) == min(3, len(pools[i]))
    assert sum(boot in boots[i] for i in range(4, 12)) < 8  # node 0 is not everyone's
    assert all(n.start_s is not None and n.start_s >= 0 for n in nodes)


def test_a_node_that_does_not_start_in_time_stops_the_launch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def start(node: NodeProc, boot: list[str] | None, lifeline: int | None = None) -> None:
        node.proc = _Proc()  # type: ignore[assignment]
        node.spawned_at = launcher.time.monotonic() - launcher.start_timeout_s(2) - 1

    monkeypatch.setattr(launcher, "_start", start)
    monkeypatch.setattr(launcher, "_poll", lambda node: None)
    with pytest.raises(RuntimeError, match="node 0 did not start: timeout after 32 s"):
        launcher.start_network(_nodes(2, tmp_path))


def test_the_start_timeout_grows_with_the_network() -> None:
    assert launcher.start_timeout_s(1) == 31.0
    assert launcher.start_timeout_s(50) == 80.0


def test_convergence_polls_ask_converged_nodes_rarely_and_confirm_with_all(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = _nodes(4, tmp_path)
    known = {0: 3, 1: 3, 2: 1, 3: 0}
    asked: list[int] = []
    clock = [0.0]

    def poll(node: NodeProc) -> dict[str, Any]:
        asked.append(node.index)
        node.status = {"caps_known": known[node.index], "peers": 1}
        return node.status

    monkeypatch.setattr(launcher, "_poll", poll)
    monkeypatch.setattr(launcher.time, "monotonic", lambda: clock[0])
    poller = launcher.Poller(nodes, full_s=5.0)
    assert not poller.round() and asked == [0, 1, 2, 3]  # the first round asks everyone
    asked.clear()
    clock[0] = 1.0
    assert not poller.round() and asked == [2, 3]  # then only those not converged
    known[2] = 3
    asked.clear()
    clock[0] = 2.0
    assert not poller.round() and asked == [2, 3]
    clock[0] = 6.0  # every full_s, everyone again
    asked.clear()
    assert not poller.round() and asked == [0, 1, 2, 3]
    known[3] = 3
    known[0] = 2  # node 0 lost an ad meanwhile: the confirming round sees it
    asked.clear()
    clock[0] = 7.0
    assert not poller.round() and asked == [3, 0, 1, 2, 3]
    known[0] = 3
    asked.clear()
    clock[0] = 8.0
    assert poller.round() and asked == [0, 0, 1, 2, 3]  # converged, confirmed by all


def test_the_default_ad_interval_keeps_the_network_at_one_ad_a_second() -> None:
    from p2pnode.testnet.model import TestnetOptions, default_caps_interval

    assert [default_caps_interval(n) for n in (1, 5, 10, 11, 20, 50, 100)] == [
        10.0, 10.0, 10.0, 11.0, 20.0, 50.0, 100.0]
    for n in (5, 20, 50, 100):
        assert n / TestnetOptions(n=n).interval_s <= 1.0
    assert TestnetOptions(n=50, caps_interval=3.0).interval_s == 3.0
