"""Prometheus text exposition over a minimal HTTP/1.0 responder on trio.

Anyone who can reach the address can connect, so what a connection can hold is bounded: at
most ``MAX_METRICS_CONNECTIONS`` at once (a new one pushes out the oldest: a scraper is
never locked out by idle sockets) and ``METRICS_TIMEOUT_S`` for the whole exchange.
"""

from __future__ import annotations

import itertools
from typing import Any

import trio
from prometheus_client import Counter

from p2pnode.api.admission import Admitted, ApiSlots
from p2pnode.metrics import Metrics

MAX_REQUEST = 8192
MAX_METRICS_CONNECTIONS = 16
METRICS_TIMEOUT_S = 5.0


def split_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {text!r}")
    return host.strip("[]"), int(port)


async def serve_metrics(
    metrics: Metrics, listen: str, *, max_connections: int = MAX_METRICS_CONNECTIONS,
    timeout_s: float = METRICS_TIMEOUT_S, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    host, port = split_hostport(listen)
    listeners = await trio.open_tcp_listeners(port, host=host)
    sock = listeners[0].socket
    bound = sock.getsockname()
    slots = ApiSlots(max_connections)  # nobody authenticates: the oldest always goes first
    scopes: dict[int, trio.CancelScope] = {}
    ids = itertools.count()
    evicted = Counter("p2pnode_metrics_connections_evicted", "Connections to the metrics "
                      "endpoint closed to make room for a newer one", registry=metrics.registry)

    async def handle(stream: trio.SocketStream) -> None:
        conn = next(ids)
        verdict = slots.open(conn)
        if isinstance(verdict, Admitted) and verdict.evicted is not None:
            scopes[verdict.evicted].cancel()
            evicted.inc()
        try:
            with trio.CancelScope() as scopes[conn], trio.move_on_after(timeout_s):
                buf = b""
                while b"\r\n\r\n" not in buf and len(buf) < MAX_REQUEST:
                    chunk = await stream.receive_some(1024)
                    if not chunk:
                        break
                    buf += chunk
                line = buf.split(b"\r\n", 1)[0].split()
                if len(line) >= 2 and line[0] == b"GET" and line[1].split(b"?")[0] in (
                    b"/metrics", b"/"
                ):
                    body = metrics.render()
                    head = (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(body))
                else:
                    body = b"not found\n"
                    head = b"HTTP/1.0 404 Not Found\r\nContent-Length: %d\r\n\r\n" % len(body)
                await stream.send_all(head + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            slots.close(conn)
            del scopes[conn]
            with trio.CancelScope(shield=True):
                await stream.aclose()

    task_status.started(f"{bound[0]}:{bound[1]}")
    await trio.serve_listeners(handle, listeners)
