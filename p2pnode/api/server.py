"""Admin API server (not part of the network protocol; see docs/operator.md).

One JSON object per line each way: ``{"token", "cmd", "args"}`` in, ``{"ok", "result"}`` or
``{"ok": false, "error"}`` out. The address and a random token are written to ``api.json``
in the node home with mode 0600: only the operator's user can talk to the node.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from p2pnode.config import API_FILE
from p2pnode.net.metrics_http import split_hostport

log = logging.getLogger("p2pnode.api")
MAX_LINE = 1 << 20

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
    handlers = default_handlers(node)
    handlers.update(getattr(node, "extra_api_handlers", {}))
    token = secrets.token_hex(16)
    host, port = split_hostport(node.config.api_listen)
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()
    addr = f"{bound[0]}:{bound[1]}"
    path = node.home / API_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"addr": addr, "token": token, "pid": os.getpid(),
                   "peer_id": node.peer_id}, f)
    os.replace(tmp, path)

    async def handle(stream: trio.SocketStream) -> None:
        buf = bytearray()
        try:
            while True:
                line = await _read_line(stream, buf)
                if line is None:
                    return
                reply = await _dispatch(line)
                await stream.send_all(json.dumps(reply, default=str).encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
            pass
        finally:
            await stream.aclose()

    async def _dispatch(line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
        except json.JSONDecodeError:
            return {"ok": False, "error": "request is not JSON"}
        if not isinstance(req, dict) or not hmac.compare_digest(
            str(req.get("token", "")), token
        ):
            return {"ok": False, "error": "bad or missing token"}
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
