"""Admin API server (not part of the network protocol; see docs/operator.md).

One JSON object per line each way: ``{"token", "cmd", "args"}`` in, ``{"ok", "result"}`` or
``{"ok": false, "error"}`` out. The address and a random token are written to ``api.json``
in the node home with mode 0600: only the operator's user can talk to the node.

Any local user can connect, though, so the limits apply before the token is checked: at
most ``api_max_connections`` open at once (a new one pushes out the oldest that has not shown
the token, ``ApiSlots``), and a connection that sends no complete request line, or does not
read its reply, within ``api_idle_timeout_s`` is closed.
"""

from __future__ import annotations

import hmac
import itertools
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge

from p2pnode.api.admission import ApiSlots, Refused, api_listen_refusal
from p2pnode.config import API_FILE, ConfigError
from p2pnode.files import write_private_file
from p2pnode.log import event
from p2pnode.net.metrics_http import split_hostport

log = logging.getLogger("p2pnode.api")
MAX_LINE = 1 << 20
# A limit hit by a flood is logged once per this many seconds per reason, with a count.
LIMIT_LOG_INTERVAL_S = 1.0

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


def default_handlers(node: Any) -> dict[str, Handler]:
    async def status(args: dict[str, Any]) -> Any:
        return node.status()

    async def peers(args: dict[str, Any]) -> Any:
        return node.peers()

    async def caps(args: dict[str, Any]) -> Any:
        return node.caps_rows()

    async def metrics(args: dict[str, Any]) -> Any:
        return node.metrics.render().decode()

    return {"status": status, "peers": peers, "caps": caps, "metrics": metrics}


class ApiMetrics:
    """The admin API's connections and the limits that closed them."""

    REASONS = ("idle_timeout", "evicted", "full", "line_too_long")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connections = Gauge("p2pnode_api_connections", "Admin API connections open",
                                 registry=registry)
        self.closed = Counter(
            "p2pnode_api_connections_closed", "Admin API connections closed by a limit "
            "(idle_timeout, evicted to make room, full, line_too_long)", ["reason"],
            registry=registry)
        for reason in self.REASONS:
            self.closed.labels(reason=reason)


class _LimitLog:
    """One log line per reason and interval, however many connections hit the limit."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def hit(self, reason: str, **fields: Any) -> None:
        now = trio.current_time()
        self._since[reason] = self._since.get(reason, 0) + 1
        if now - self._last.get(reason, -LIMIT_LOG_INTERVAL_S) >= LIMIT_LOG_INTERVAL_S:
            event(log, "api.limit", logging.WARNING, reason=reason,
                  count=self._since.pop(reason), **fields)
            self._last[reason] = now


async def _read_line(stream: trio.SocketStream, buf: bytearray) -> bytes | None:
    while b"\n" not in buf:
        if len(buf) > MAX_LINE:
            raise ValueError("request line too long")
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line


async def serve_admin_api(
    node: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    cfg = node.config
    refusal = api_listen_refusal(cfg.api_listen, cfg.api_allow_remote)
    if refusal is not None:
        raise ConfigError(refusal)
    handlers = default_handlers(node)
    handlers.update(getattr(node, "extra_api_handlers", {}))
    token = secrets.token_hex(16)
    host, port = split_hostport(cfg.api_listen)
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()
    addr = f"{bound[0]}:{bound[1]}"
    path = node.home / API_FILE
    write_private_file(path, json.dumps({"addr": addr, "token": token, "pid": os.getpid(),
                                         "peer_id": node.peer_id}).encode())
    metrics = ApiMetrics(node.metrics.registry)
    slots = ApiSlots(cfg.api_max_connections)
    timeout = cfg.api_idle_timeout_s
    scopes: dict[int, trio.CancelScope] = {}
    ids = itertools.count()
    limit_log = _LimitLog()

    def closed_by(reason: str) -> None:
        metrics.closed.labels(reason=reason).inc()
        limit_log.hit(reason, open=len(slots), max_connections=slots.capacity)

    async def handle(stream: trio.SocketStream) -> None:
        conn = next(ids)
        verdict = slots.open(conn)
        if isinstance(verdict, Refused):
            closed_by("full")
            await stream.aclose()
            return
        if verdict.evicted is not None:
            scopes[verdict.evicted].cancel()
            closed_by("evicted")
        metrics.connections.inc()
        buf = bytearray()
        try:
            with trio.CancelScope() as scopes[conn]:
                while True:
                    with trio.move_on_after(timeout) as idle:
                        line = await _read_line(stream, buf)
                    if idle.cancelled_caught:
                        closed_by("idle_timeout")
                        return
                    if line is None:
                        return
                    reply = await _dispatch(line, conn)
                    with trio.move_on_after(timeout) as idle:
                        await stream.send_all(
                            json.dumps(reply, default=str).encode() + b"\n")
                    if idle.cancelled_caught:  # a client that does not read its reply
                        closed_by("idle_timeout")
                        return
        except ValueError:
            closed_by("line_too_long")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            slots.close(conn)
            del scopes[conn]
            metrics.connections.dec()
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _dispatch(line: bytes, conn: int) -> dict[str, Any]:
        try:
            req = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"ok": False, "error": "request is not JSON"}
        # Bytes: compare_digest refuses str with non-ASCII characters.
        if not isinstance(req, dict) or not hmac.compare_digest(
            str(req.get("token", "")).encode(), token.encode()
        ):
            return {"ok": False, "error": "bad or missing token"}
        slots.authenticated(conn)  # before the command runs: a long one is not evicted
        h = handlers.get(str(req.get("cmd")))
        if h is None:
            return {"ok": False, "error": f"unknown command {req.get('cmd')!r}",
                    "commands": sorted(handlers)}
        args = req.get("args") or {}
        try:
            return {"ok": True, "result": await h(args)}
        except Exception as e:  # one failing command must not take the API down
            log.exception("admin command failed")
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}

    task_status.started(addr)
    try:
        await trio.serve_listeners(handle, listeners)
    finally:
        path.unlink(missing_ok=True)
