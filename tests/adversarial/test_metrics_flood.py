"""The metrics endpoint survives a local user who opens 300 connections and sends nothing:
the newest push out the oldest, so a scrape always gets through."""

from __future__ import annotations

import resource

import trio

from p2pnode.metrics import Metrics
from p2pnode.net.metrics_http import serve_metrics

FLOOD = 300
MAX_CONNECTIONS = 8
BOUND_S = 30.0


async def scrape(addr: str) -> bytes:
    host, port = addr.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        out = b""
        while chunk := await stream.receive_some(65536):
            out += chunk
    return out


async def test_idle_connections_cannot_lock_out_a_scrape() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * FLOOD:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * FLOOD), hard))
    metrics = Metrics()
    with trio.fail_after(BOUND_S):
        async with trio.open_nursery() as nursery:
            addr = await nursery.start(lambda task_status: serve_metrics(
                metrics, "127.0.0.1:0", max_connections=MAX_CONNECTIONS, timeout_s=60,
                task_status=task_status))
            host, port = addr.rsplit(":", 1)
            idle = [await trio.open_tcp_stream(host, int(port)) for _ in range(FLOOD)]
            body = await scrape(addr)
            assert body.startswith(b"HTTP/1.0 200 OK") and b"p2pnode_uptime_seconds" in body
            evicted = metrics.registry.get_sample_value(
                "p2pnode_metrics_connections_evicted_total") or 0
            # The server holds at most MAX_CONNECTIONS: all but the newest few were closed.
            assert evicted >= FLOOD + 1 - MAX_CONNECTIONS
            closed = 0
            for s in idle[: FLOOD - MAX_CONNECTIONS]:
                with trio.move_on_after(5):
                    if await s.receive_some(1) == b"":
                        closed += 1
            assert closed == FLOOD - MAX_CONNECTIONS
            for s in idle:
                await s.aclose()
            nursery.cancel_scope.cancel()
