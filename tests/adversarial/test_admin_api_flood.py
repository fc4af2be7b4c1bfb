"""The admin API survives a local user who opens 500 connections without the token."""

from __future__ import annotations

import json
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pnode.api.client import call
from p2pnode.api.server import serve_admin_api
from p2pnode.config import Config
from p2pnode.metrics import Metrics

FLOOD = 500
MAX_CONNECTIONS = 16
IDLE_TIMEOUT_S = 1.0
BOUND_S = 30.0  # every wait below ends long before this, or the test fails


@dataclass
class FakeNode:
    """What the admin API needs of a node, no network."""

    home: Path
    config: Config = field(default_factory=lambda: Config(
        api_max_connections=MAX_CONNECTIONS, api_idle_timeout_s=IDLE_TIMEOUT_S))
    metrics: Metrics = field(default_factory=Metrics)
    peer_id: str = "12D3KooWfake"

    def status(self) -> dict[str, Any]:
        return {"peer_id": self.peer_id}


def closed_by(node: FakeNode, reason: str) -> float:
    value = node.metrics.registry.get_sample_value(
        "p2pnode_api_connections_closed_total", {"reason": reason})
    return value or 0.0


def open_now(node: FakeNode) -> float:
    return node.metrics.registry.get_sample_value("p2pnode_api_connections") or 0.0


@pytest.fixture
def flood_size() -> int:
    """How many connections to open: FLOOD, or as many as the file-descriptor hard limit
    allows (both ends live in this process), which is still many times the cap."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = FLOOD if hard == resource.RLIM_INFINITY else min(FLOOD, (hard - 256) // 2)
    assert n >= 8 * MAX_CONNECTIONS, f"a file-descriptor hard limit of {hard} is too low"
    need = 2 * n + 256
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return n


async def until_closed(stream: trio.SocketStream) -> None:
    try:
        while await stream.receive_some(1024):
            pass
    except trio.BrokenResourceError:
        pass  # reset by the server: closed as well


async def test_500_idle_connections_do_not_lock_out_the_operator(
        tmp_path: Path, flood_size: int, caplog: pytest.LogCaptureFixture) -> None:
    node = FakeNode(tmp_path)
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(serve_admin_api, node)
        host, _, port = addr.rpartition(":")
        flood = []
        with trio.fail_after(BOUND_S):
            for i in range(flood_size):
                s = await trio.open_tcp_stream(host, int(port))
                if i % 2:
                    await s.send_all(b'{"token": "')  # half a request, never finished
                flood.append(s)
            # The operator's CLI gets through while all 500 are open on our side.
            status = await trio.to_thread.run_sync(call, tmp_path, "status")
            assert status == {"peer_id": node.peer_id}
            # The server never held more than its cap; the rest were pushed out at once.
            assert open_now(node) <= MAX_CONNECTIONS
            assert closed_by(node, "evicted") >= flood_size - MAX_CONNECTIONS
            # Every one of the 500 is closed by the server: evicted, or by the idle timeout.
            for s in flood:
                await until_closed(s)
                await s.aclose()
        assert closed_by(node, "idle_timeout") >= 1
        assert closed_by(node, "evicted") + closed_by(node, "idle_timeout") >= flood_size
        assert open_now(node) == 0
        assert "api.limit" in caplog.text
        nursery.cancel_scope.cancel()


async def test_a_connection_with_the_token_is_not_pushed_out(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(serve_admin_api, node)
        token = json.loads((tmp_path / "api.json").read_text())["token"]
        host, _, port = addr.rpartition(":")
        request = json.dumps({"token": token, "cmd": "status"}).encode() + b"\n"
        with trio.fail_after(BOUND_S):
            operator = await trio.open_tcp_stream(host, int(port))
            await operator.send_all(request)
            assert b'"ok": true' in await operator.receive_some(65536)
            others = [await trio.open_tcp_stream(host, int(port))
                      for _ in range(3 * MAX_CONNECTIONS)]
            for s in others[:-MAX_CONNECTIONS]:
                await until_closed(s)
            await operator.send_all(request)
            assert b'"ok": true' in await operator.receive_some(65536)
            for s in [operator, *others]:
                await s.aclose()
        nursery.cancel_scope.cancel()
