"""Prometheus text exposition over a minimal HTTP/1.0 responder on trio."""

from __future__ import annotations

from typing import Any

import trio

from p2pnode.metrics import Metrics

MAX_REQUEST = 8192


def split_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {text!r}")
    return host.strip("[]"), int(port)


async def serve_metrics(
    metrics: Metrics, listen: str, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    host, port = split_hostport(listen)
    listeners = await trio.open_tcp_listeners(port, host=host)
    sock = listeners[0].socket
    bound = sock.getsockname()

    async def handle(stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(5):
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
            await stream.aclose()

    task_status.started(f"{bound[0]}:{bound[1]}")
    await trio.serve_listeners(handle, listeners)
