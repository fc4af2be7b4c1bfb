"""Blocking admin API client used by the CLI and the testnet launcher."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from p2pnode.config import API_FILE


class ApiError(RuntimeError):
    pass


class NodeNotRunning(ApiError):
    pass


def call(home: Path, cmd: str, args: dict[str, Any] | None = None,
         timeout: float = 10.0) -> Any:
    path = home / API_FILE
    try:
        info = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise NodeNotRunning(f"no running node at {home} (no readable {API_FILE})") from e
    host, _, port = info["addr"].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            req = {"token": info["token"], "cmd": cmd, "args": args or {}}
            s.sendall(json.dumps(req).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                buf += chunk
    except OSError as e:
        raise NodeNotRunning(f"node at {home} is not answering on {info['addr']}: {e}") from e
    if not buf:
        raise ApiError("empty reply")
    reply = json.loads(buf)
    if not reply.get("ok"):
        raise ApiError(reply.get("error", "unknown error"))
    return reply["result"]
